// The IAM policy evaluator of the local IAM's authorization layer (local/authz.py).
//
// One long-lived process: it reads one JSON request per line on stdin and writes one JSON answer per
// line on stdout, so that the proxy pays Node's start-up and iam-simulate's data loading once.
//
//   request: {"id": 1, "principal": "arn:aws:sts::...:assumed-role/r/s", "action": "iam:CreateRole",
//             "resource": "arn:aws:iam::123456789012:role/x", "account": "123456789012",
//             "context": {"aws:RequestTag/k": "v", "aws:TagKeys": ["k"]},
//             "policies": [{"name": "iam", "policy": {...}}], "boundary": {...} | null}
//   answer:  {"id": 1, "decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied",
//             "allowedBy": ["Sid", ...], "deniedBy": ["Sid", ...], "ignoredKeys": [...]}
//            or {"id": 1, "error": "..."} when the simulation rejects its input.
//
// Context keys that the Service Authorization Reference does not list for the action are dropped
// (and named in ignoredKeys), as IAM does not supply them: the caller builds one context per request
// and this decides which keys the action sees.
import { allowedContextKeysForRequest, runSimulation } from '@cloud-copilot/iam-simulate'
import readline from 'node:readline'

const allowedKeys = new Map()

async function keysFor(action, resource) {
  const [service, name] = action.split(':')
  const kind = resource.split(':')[5]?.split('/')[0] ?? ''
  const cacheKey = `${action} ${kind}`
  if (!allowedKeys.has(cacheKey)) {
    const keys = await allowedContextKeysForRequest(service, name, resource, false, undefined)
    allowedKeys.set(cacheKey, keys.map((k) => k.toLowerCase()))
  }
  return allowedKeys.get(cacheKey)
}

function keyAllowed(key, allowed) {
  const lower = key.toLowerCase()
  return allowed.some((pattern) => {
    const variable = pattern.indexOf('${')
    return variable < 0 ? pattern === lower : lower.startsWith(pattern.slice(0, variable))
  })
}

function sids(statements) {
  return (statements ?? []).map((s) => s.explain?.identifier ?? s.statement?.sid?.() ?? '?')
}

async function evaluate(request) {
  const allowed = await keysFor(request.action, request.resource)
  const context = {}
  const ignoredKeys = []
  for (const [key, value] of Object.entries(request.context ?? {})) {
    if (keyAllowed(key, allowed)) context[key] = value
    else ignoredKeys.push(key)
  }
  const simulation = {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.account },
      contextVariables: context
    },
    identityPolicies: request.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: []
  }
  if (request.boundary) simulation.permissionBoundaryPolicies = [{ name: 'boundary', policy: request.boundary }]
  const result = await runSimulation(simulation, {})
  if (result.resultType === 'error') return { error: JSON.stringify(result.errors) }
  const identity = result.result?.analysis?.identityAnalysis
  return {
    decision: result.overallResult,
    allowedBy: sids(identity?.allowStatements),
    deniedBy: sids(identity?.denyStatements),
    ignoredKeys
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  let id = null
  let answer
  try {
    const request = JSON.parse(line)
    id = request.id
    answer = await evaluate(request)
  } catch (err) {
    answer = { error: String(err?.stack ?? err) }
  }
  process.stdout.write(JSON.stringify({ id, ...answer }) + '\n')
}
