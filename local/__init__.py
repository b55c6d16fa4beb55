"""Local harness: runs the real function binary over the Lambda Runtime API
protocol against a local moto server.

- runtime_api: Lambda Runtime API emulator and the function process wrapper.
- moto: moto server process, boto3 clients, presigned response URLs, IAM snapshots.
- events: CloudFormation custom-resource requests.
- accounts: several simulated AWS accounts, joined across ministack and moto.
- demo: `python -m local.demo`, the full resource lifecycle from events/.
"""
