"""
A local S3 API for tests: moto's server mode (`python -m moto.server`) in a subprocess on a free port of 127.0.0.1,
with its IAM authentication on, so a wrong secret is refused as AWS refuses it (SignatureDoesNotMatch,
InvalidAccessKeyId) rather than accepted as moto accepts anything by default.

`S3Server.start()` creates an IAM user allowed s3:* and its access key while authentication is still off (moto counts
unauthenticated actions), then switches it on (`/moto-api/reset-auth` with 0). `env()` is what a user's machine would
have: AWS_ENDPOINT_URL (read by botocore, so by s3fs) and the key in the standard variables; the code under test
receives nothing else, so it goes through the same configuration a real bucket does. AWS_CONFIG_FILE and
AWS_SHARED_CREDENTIALS_FILE point nowhere, so a developer's own ~/.aws never leaks into a test, and the EC2 metadata
lookup is off (nothing to find here, and it would wait for a timeout).
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.key_id = self.secret = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, buckets: tuple[str, ...] = ()) -> "S3Server":
        self.port = free_port()
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._configure(buckets)
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self, buckets: tuple[str, ...]) -> None:
        import boto3

        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        admin = {"endpoint_url": self.endpoint, "region_name": REGION}
        admin |= {"aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="tester")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="tester", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="tester")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        s3 = boto3.client("s3", **admin)
        for bucket in buckets:
            s3.create_bucket(Bucket=bucket)
        # From here on every request must be signed with the tester's key.
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None
