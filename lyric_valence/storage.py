"""
Catalogues where they live: paths on this machine, or URLs of object storage and the Hub, read and written through
fsspec's filesystem for the URL's scheme.

    s3://bucket/lyrics/            s3fs (pip install s3fs, or "lyric-valence[s3]")
    gs://bucket/lyrics/            gcsfs
    az://container/lyrics/         adlfs (also abfs://)
    hf://datasets/me/lyrics/data/  huggingface_hub's HfFileSystem (installed with this package); read only here

Each filesystem finds its credentials where its own ecosystem keeps them (AWS: the AWS_* variables,
~/.aws/credentials and ~/.aws/config with AWS_PROFILE, an instance role, and AWS_ENDPOINT_URL for S3-compatible
servers; Google: GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`; Azure: AZURE_STORAGE_* or
`az login`; the Hub: HF_TOKEN or `hf auth login`): this package passes none of them, so none is ever printed, pickled
or sent to a Ray worker; each machine reads its own. Every failure is one `UserError` naming the URL
(`storage_error`), never the credential.

fsspec rather than pyarrow's own S3/GCS filesystems: one interface for every scheme (the Hub's only exists in fsspec),
and s3fs reads the whole AWS configuration (endpoint included) that pyarrow's S3 filesystem does not.
"""

import os
import re

from lyric_valence.errors import UserError

URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
# The package fsspec needs for a scheme, and where the scheme's credentials come from (said when they fail).
PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID / AWS_PROFILE, ~/.aws/credentials, an instance role",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS or gcloud auth application-default login",
    "az": "AZURE_STORAGE_* or az login",
    "hf": "HF_TOKEN or hf auth login",
}
CREDENTIALS |= {"s3a": CREDENTIALS["s3"], "gcs": CREDENTIALS["gs"], "abfs": CREDENTIALS["az"]}
CREDENTIALS["abfss"] = CREDENTIALS["az"]
# Environment variables whose values are never repeated in a message (some libraries quote a request's headers).
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|ACCESS_KEY|ACCOUNT_KEY|SAS", re.IGNORECASE)


def scheme(name: str) -> str | None:
    """The URL scheme of `name` (s3, gs, hf, ...), None for a path on this machine (file:// included)."""
    match = URL.match(str(name))
    if match is None or match["scheme"].lower() == "file":
        return None
    return match["scheme"].lower()


def is_remote(name) -> bool:
    return scheme(str(name)) is not None


def join(folder: str, name: str) -> str:
    """`name` inside the folder `folder` (a URL or a local path)."""
    return f"{folder.rstrip('/')}/{name}" if is_remote(folder) else os.path.join(folder, name)


def filesystem(url: str):
    """The fsspec filesystem of `url` and the path inside it; a `UserError` when its package is missing."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        package = PACKAGES.get(scheme(url) or "", "the fsspec implementation of this scheme")
        raise UserError(f"{url}: reading {scheme(url)}:// needs {package} (pip install {package})") from None
    except ValueError as error:  # an unknown scheme, or a malformed URL (fsspec, HfFileSystem)
        raise UserError(f"{url}: {first_line(error)}") from None
    except Exception as error:
        raise storage_error(error, url) from None


def full_url(fs, path: str, like: str) -> str:
    """`path` of `fs` as a URL of the scheme `like` uses (fsspec's paths drop it)."""
    return f"{scheme(like)}://{path.lstrip('/')}" if is_remote(like) else path


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return redact(text.splitlines()[0] if text else type(error).__name__)


def redact(text: str) -> str:
    """`text` without the value of any credential-like environment variable."""
    for name, value in os.environ.items():
        if SECRET_NAME.search(name) and len(value) >= 8:
            text = text.replace(value, "***")
    return text


def storage_error(error: BaseException, url: str, what: str = "") -> UserError:
    """
    A filesystem's exception as one line naming `url` (`what`: the flag, e.g. "--output "): a missing file, folder or
    bucket; denied or missing credentials (the places the scheme reads them from, never their values); else the
    exception's first line.
    """
    if isinstance(error, UserError):
        return error
    name = f"{what}{url}"
    where = CREDENTIALS.get(scheme(url) or "", "")
    hint = f" ({where})" if where else ""
    kind = type(error).__name__
    status = getattr(getattr(error, "response", None), "status_code", None)
    if kind in (
        "NoCredentialsError",
        "PartialCredentialsError",
        "DefaultCredentialsError",
        "ClientAuthenticationError",
    ):
        return UserError(f"{name}: no credentials found{hint}")
    if kind == "GatedRepoError" or isinstance(error, PermissionError) or status in (401, 403):
        return UserError(f"{name}: access denied; check the credentials{hint}")
    if kind == "RepositoryNotFoundError":
        return UserError(f"{name}: no such repository, or the token cannot read it{hint}")
    if kind in ("RevisionNotFoundError",):
        return UserError(f"{name}: no such revision")
    if isinstance(error, FileNotFoundError) or kind in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
        message = str(error).lower()
        if "bucket" in message or "container" in message:
            return UserError(f"{name}: no such bucket")
        return UserError(f"{name}: no such file or folder")
    if isinstance(error, IsADirectoryError):
        return UserError(f"{name}: a folder, not a file")
    return UserError(f"{name}: {kind}: {first_line(error)}")


def info(url: str) -> dict | None:
    """fsspec's `info` of `url` (`type`: file or directory, `size`, ...), None when nothing is there."""
    fs, path = filesystem(url)
    try:
        return fs.info(path)
    except FileNotFoundError as error:
        if "bucket" in str(error).lower() or "container" in str(error).lower():
            raise storage_error(error, url) from None
        return None
    except Exception as error:
        raise storage_error(error, url) from None


def list_folder(url: str, missing_ok: bool = False, what: str = "") -> list[str]:
    """The files directly in the folder `url`, as URLs, sorted; with `missing_ok`, none for a folder not there (an
    object store's prefix holding nothing) but still an error for a missing bucket. `what`: the flag errors name."""
    fs, path = filesystem(url)
    try:
        entries = fs.ls(path, detail=True, refresh=True)
    except FileNotFoundError as error:
        if missing_ok and not any(word in str(error).lower() for word in ("bucket", "container")):
            return []
        raise storage_error(error, url, what) from None
    except Exception as error:
        raise storage_error(error, url, what) from None
    return sorted(full_url(fs, entry["name"], url) for entry in entries if entry["type"] == "file")


def glob(pattern: str) -> list[str]:
    """The files that the glob `pattern` (a URL; ** for any depth) matches, as URLs, sorted."""
    fs, path = filesystem(pattern)
    try:
        matches = fs.glob(path, detail=True)
    except Exception as error:
        raise storage_error(error, pattern) from None
    return sorted(full_url(fs, name, pattern) for name, entry in matches.items() if entry["type"] == "file")


def open_input(url: str, block_size: int | None = None):
    """`url` opened for reading, binary and seekable (Parquet readers seek to the footer); `block_size`: the bytes a
    remote read fetches at least (default: the filesystem's, several MiB)."""
    fs, path = filesystem(url)
    try:
        return fs.open(path, "rb", **({"block_size": block_size} if block_size else {}))
    except Exception as error:
        raise storage_error(error, url) from None


def read_bytes(url: str) -> bytes:
    """The whole of `url`, as it is now (not as a listing cached in this process saw it)."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    with open_input(url) as handle:
        try:
            return handle.read()
        except Exception as error:
            raise storage_error(error, url) from None


def write_bytes(url: str, data: bytes) -> None:
    """Write `url` whole. On object storage the object appears complete or not at all (one PUT, or a multipart
    upload completed at close); on this machine through a temporary file renamed into place."""
    if not is_remote(url):
        folder, name = os.path.split(url)
        partial = os.path.join(folder, f".{name}.partial")  # hidden: Parquet dataset readers skip it
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, url)
        return
    fs, path = filesystem(url)
    try:
        with fs.open(path, "wb") as handle:
            handle.write(data)
    except Exception as error:
        raise storage_error(error, url) from None


def open_output(url: str):
    """`url` opened for writing, binary: on object storage the object appears when it is closed, whole."""
    fs, path = filesystem(url)
    try:
        return fs.open(path, "wb")
    except Exception as error:
        raise storage_error(error, url, "--output ") from None


def delete(url: str) -> None:
    fs, path = filesystem(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    except Exception as error:
        raise storage_error(error, url) from None
