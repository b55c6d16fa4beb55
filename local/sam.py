"""`sam build` and the transform half of `sam deploy`, offline: the function's zip and template.yaml
as plain CloudFormation.

    code = package_bootstrap(binary)                  # a zip holding the binary as `bootstrap`
    template = translate(TEMPLATE, "code", "fn.zip")  # CodeUri -> that zip's S3 location

The translation is the SAM translator's (PyPI aws-sam-translator, what `sam validate` and
`sam deploy` use), so the local engine runs the resources AWS would: the execution role exactly
as template.yaml writes it, the function, its log group and its EventInvokeConfig.
"""

from __future__ import annotations

import copy
import io
import os
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
FUNCTION = "InstanceProfileFunction"


def package_bootstrap(binary: str | os.PathLike) -> bytes:
    """The deployment package as cargo-lambda makes it: the binary alone, named `bootstrap`,
    executable. Compression level 1: a debug build is hundreds of MB, and speed matters more
    here than size."""
    buffer = io.BytesIO()
    info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 << 16)  # a regular file, rwxr-xr-x
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w") as archive, open(binary, "rb") as source:
        with archive.open(info, "w", force_zip64=True) as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
    return buffer.getvalue()


class _NoManagedPolicies:
    """The translator's policy loader. It is asked only for SAM policy templates and for the
    managed policies a function names by short name; template.yaml uses neither (its role is
    written out), so an empty map is the truth here and no AWS account is needed."""

    def load(self) -> dict:
        return {}


def load_template(path: str | os.PathLike = TEMPLATE) -> dict:
    from samtranslator.yaml_helper import yaml_parse
    return yaml_parse(Path(path).read_text())


def translate(template: dict | str | os.PathLike, bucket: str, key: str,
              region: str = "us-east-1") -> dict:
    """The SAM template as plain CloudFormation, its function's CodeUri pointing at s3://bucket/key.
    The input is not modified."""
    from samtranslator.translator.transform import transform
    sam = copy.deepcopy(template) if isinstance(template, dict) else load_template(template)
    sam["Resources"][FUNCTION]["Properties"]["CodeUri"] = {"Bucket": bucket, "Key": key}
    # The translator reads the region from the environment (for ARNs of its own making).
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        return transform(sam, {}, _NoManagedPolicies())
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous
