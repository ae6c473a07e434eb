"""boto3 calling STS GetCallerIdentity, as an agent's code would: `boto3_sts.py ENDPOINT
KEY_ID SECRET` prints the caller's ARN. The keys are dummies; under `vault run` the SigV4
plugin signs again with the vault's (tests/cli/run_clients.rs)."""

import sys

import boto3

endpoint, key_id, secret = sys.argv[1:4]
sts = boto3.client(
    "sts",
    region_name="us-east-1",
    endpoint_url=endpoint,
    aws_access_key_id=key_id,
    aws_secret_access_key=secret,
)
print(sts.get_caller_identity()["Arn"])
