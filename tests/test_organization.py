"""deploy/organization.yaml (the StackSets rollout) deploys the same function as template.yaml: the
same execution role, statement for statement, under every combination of the options; the same
environment and Lambda settings; the same self-healing rule. It also creates nothing outside its
DeploymentRegion, and adopts the default profile only when AllowAdoption says so.

template.yaml is SAM, the organization template plain CloudFormation (StackSets with
service-managed permissions refuse transforms), so the comparison is of what both declare, after
`Fn::If` is decided (tests/test_template.py's resolver). Publishing metadata is checked here too."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import cfnlint.decode
import pytest

import test_template as main
from test_template import EVERY_SETTING, resolve

ROOT = Path(__file__).resolve().parent.parent
ORGANIZATION = ROOT / "deploy" / "organization.yaml"
ROLE_PARAMETERS = ["AllowedPolicyArns", "PermissionsBoundaryArn", "AllowAdoption", "RepairableRoleArns"]
SHARED_PARAMETERS = ROLE_PARAMETERS + ["InlinePolicies", "ReservedConcurrency", "LogRetentionInDays",
                                       "SelfHealing", "HealAdopted"]
ROLE_CONDITIONS = ["HasPermissionsBoundary", "AllowsAdoption", "HasRepairableRoles", "HasReservedConcurrency"]
# The organization template's own options, set for the resolver (they do not touch the role).
ORGANIZATION_ONLY = {"HasCodeObjectVersion": False, "HasManagedPolicies": False}
LAMBDA_SETTINGS = ["Handler", "Runtime", "Architectures", "MemorySize", "Timeout", "Role",
                   "ReservedConcurrentExecutions", "LoggingConfig"]


def load_organization() -> dict:
    template, errors = cfnlint.decode.decode(str(ORGANIZATION))
    assert not errors, errors
    return json.loads(json.dumps(template))


def role_differences(main_template: dict, organization: dict, conditions: dict) -> list[str]:
    """How the organization template's execution role (and what it reads) differs from template.yaml's."""
    problems = []
    ours = resolve(organization["Resources"][main.ROLE], conditions)
    theirs = resolve(main_template["Resources"][main.ROLE], conditions)
    if ours.get("Condition") != "InHomeRegion":
        problems.append(f"the role is made outside DeploymentRegion: Condition {ours.get('Condition')!r}")
    if ours["Properties"] != theirs["Properties"]:
        problems.append("the execution role differs from template.yaml's")
    for name in ROLE_PARAMETERS:
        a, b = organization["Parameters"][name], main_template["Parameters"][name]
        if {k: v for k, v in a.items() if k != "Description"} != {k: v for k, v in b.items() if k != "Description"}:
            problems.append(f"parameter {name} differs")
    for name in ROLE_CONDITIONS:
        if organization["Conditions"][name] != main_template["Conditions"][name]:
            problems.append(f"condition {name} differs")
    return problems


@EVERY_SETTING
def test_the_execution_role_is_template_yamls(conditions):
    assert role_differences(main.load_template(), load_organization(), conditions) == []


@EVERY_SETTING
def test_the_template_checks_pass_on_the_organization_role(conditions):
    """tests/test_template.py's checks, run on the organization template itself."""
    template = resolve(load_organization(), {**ORGANIZATION_ONLY, **conditions})
    withheld = {"DeleteRolePermissionsBoundary"} if conditions["HasPermissionsBoundary"] else set()
    assert main.coverage_problems(template, main.code_actions() - withheld) == []
    assert main.resource_star_problems(template) == []
    assert main.scope_problems(template) == []
    assert main.policy_arn_problems(template) == []
    assert main.ownership_problems(template, conditions) == []
    assert main.protected_tag_problems(template) == []
    assert main.boundary_problems(template, conditions["HasPermissionsBoundary"]) == []


@pytest.mark.parametrize("mutate", [
    lambda t: main.policy_statements(t).append(copy.deepcopy(main.IAM_STAR)),
    lambda t: main.policy_statements(t).pop(),
    lambda t: main.policy_statements(t)[0]["Action"].append("iam:GetUser"),
    lambda t: t["Resources"][main.ROLE].pop("Condition"),
    lambda t: t["Parameters"]["AllowedPolicyArns"].__setitem__("Default", "*"),
    lambda t: t["Conditions"].__setitem__("AllowsAdoption", True),
], ids=["extra-statement", "missing-statement", "extra-action", "every-region", "any-policy", "adoption-always"])
def test_a_drifted_organization_role_is_noticed(mutate):
    organization = load_organization()
    mutate(organization)
    assert role_differences(main.load_template(), organization, main.DEFAULTS)


def test_the_function_is_template_yamls():
    """Same environment, runtime, memory, timeout, concurrency, logging and invoke settings."""
    organization = load_organization()["Resources"]
    sam = main.load_template()["Resources"]
    ours, theirs = organization[main.FUNCTION]["Properties"], sam[main.FUNCTION]["Properties"]
    assert ours["Environment"] == theirs["Environment"]
    assert {k: ours[k] for k in LAMBDA_SETTINGS} == {k: theirs[k] for k in LAMBDA_SETTINGS}
    invoke = organization["InstanceProfileFunctionEventInvokeConfig"]["Properties"]
    assert invoke == {"FunctionName": {"Ref": main.FUNCTION}, "Qualifier": "$LATEST",
                      **theirs["EventInvokeConfig"]}
    assert organization["LogGroup"]["Properties"] == sam["LogGroup"]["Properties"]
    assert organization[main.FUNCTION]["Metadata"]["checkov"] == sam[main.FUNCTION]["Metadata"]["checkov"]
    for name in ("SelfHealingRule", "SelfHealingPermission"):
        assert organization[name]["Properties"] == sam[name]["Properties"], name
        assert organization[name]["Condition"] == "HealsSelf"
    parameters = load_organization()["Parameters"]
    for name in SHARED_PARAMETERS:
        a, b = parameters[name], main.load_template()["Parameters"][name]
        assert {k: v for k, v in a.items() if k != "Description"} == {
            k: v for k, v in b.items() if k != "Description"}, name


def test_nothing_is_made_outside_the_deployment_region():
    """IAM is global: a second region of the same account must not get a second copy."""
    template = load_organization()
    conditions = template["Conditions"]
    assert conditions["InHomeRegion"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, {"Ref": "DeploymentRegion"}]}
    assert conditions["NotInHomeRegion"] == {"Fn::Not": [{"Condition": "InHomeRegion"}]}
    assert conditions["HealsSelf"]["Fn::And"][0] == {"Condition": "InHomeRegion"}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudFormation::WaitConditionHandle":
            assert resource["Condition"] == "NotInHomeRegion", name
        else:
            assert resource.get("Condition") in ("InHomeRegion", "HealsSelf"), name
    for name, output in template["Outputs"].items():
        assert output["Condition"] == "InHomeRegion", name
    assert "Transform" not in template


def test_the_default_profile_is_adopted_only_when_allowed():
    template = load_organization()
    profile = template["Resources"]["DefaultInstanceProfile"]
    assert profile["Type"] == "Custom::EbInstanceProfile"
    props = profile["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": [main.FUNCTION, "Arn"]}
    assert props["InstanceProfileName"] == "aws-elasticbeanstalk-ec2-role"
    assert props["AdoptExisting"] == {"Ref": "AllowAdoption"}
    assert template["Parameters"]["AllowAdoption"]["Default"] == "false"
    assert props["Tiers"] == {"Ref": "Tiers"}
    assert template["Outputs"]["InstanceProfileName"]["Value"] == {"Ref": "DefaultInstanceProfile"}
    assert template["Outputs"]["InstanceProfileName"]["Export"]["Name"] == {
        "Fn::Sub": "${ExportPrefix}-InstanceProfileName"}


def test_the_self_healing_rule_matches_the_events_the_function_handles():
    """The rule's event names are those src/heal.rs undoes or reports, and those only."""
    pattern = main.load_template()["Resources"]["SelfHealingRule"]["Properties"]["EventPattern"]
    handled = set(re.findall(r'^\s+"(\w+)" => Change::', (ROOT / "src" / "heal.rs").read_text(), re.M))
    assert handled == {"DetachRolePolicy", "RemoveRoleFromInstanceProfile", "UpdateAssumeRolePolicy",
                       "DeleteRolePolicy"}
    assert set(pattern["detail"]["eventName"]) == handled
    assert pattern["source"] == ["aws.iam"] and pattern["detail-type"] == ["AWS API Call via CloudTrail"]


def test_publishing_metadata_matches_the_crate():
    """sam publish reads AWS::ServerlessRepo::Application: its version and licence are the crate's."""
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]
    application = main.load_template()["Metadata"]["AWS::ServerlessRepo::Application"]
    assert application["SemanticVersion"] == cargo["version"]
    assert application["SpdxLicenseId"] == cargo["license"] == "MIT"
    assert (ROOT / application["LicenseUrl"]).read_text().startswith("MIT License")
    assert (ROOT / application["ReadmeUrl"]).is_file()
    for key in ("Name", "Description", "Author", "Labels", "HomePageUrl", "SourceCodeUrl"):
        assert application[key], key
