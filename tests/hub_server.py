"""
A local stand-in for the Hugging Face Hub's HTTP API, for tests: the requests huggingface_hub's client sends when
this package publishes a model and when transformers, peft or huggingface_hub load it.

No PyPI package serves the Hub's upload API (olah mirrors downloads only, and answers 401 where the Hub answers 404),
so the tests bring this one. It runs in-process on 127.0.0.1 (a `ThreadingHTTPServer` on a free port) and keeps
everything in memory: users by token, repositories with their owner, visibility, branches and every commit.

Reproduced, as the Hub answers them:
- `POST /api/repos/create` (`visibility: private`; a bare name goes to the token owner's namespace; 409 when the
  repository exists, 403 in another user's namespace); the new repository starts with a commit holding
  `.gitattributes`, as on the Hub;
- `GET /api/whoami-v2`, `POST /api/validate-yaml` (the model card's YAML must parse), `GET /api/agent-harnesses`
  (the registry huggingface_hub reads to name a coding agent in its user agent; empty here);
- `POST /api/models/{repo}/preupload/{rev}`: every file gets upload mode "regular" (its content then travels inline,
  base64, in the commit) and the blob id of the file already at that path, so unchanged files are skipped;
- `POST /api/models/{repo}/commit/{rev}`: the ndjson commit (header, file, deletedFile, deletedFolder), applied
  atomically as a new commit with its own sha; older commits stay readable by sha;
- `POST /api/models/{repo}/branch/{branch}` (from main or `startingPoint`; 409 when it exists);
- `GET /api/models/{repo}[/revision/{rev}]` (sha, private, siblings, card metadata) and
  `GET /api/models/{repo}/tree/{rev}[/path]` (`recursive`);
- `HEAD` / `GET /{repo}/resolve/{rev}/{path}` with `ETag` (the git blob id), `X-Repo-Commit`, `Content-Length`, and
  a `Range: bytes=` header answered 206 with that slice (how `HfFileSystem` reads a file);
- dataset repositories, read only (`HubServer.create_repo(..., repo_type="dataset")` and `add_files` fill them on
  the server's side): `GET /api/datasets/{repo}[/revision/{rev}]`, `/api/datasets/{repo}/tree/{rev}[/path]`,
  `POST /api/{models,datasets}/{repo}/paths-info/{rev}` and `/datasets/{repo}/resolve/{rev}/{path}`: what
  huggingface_hub's `HfFileSystem` asks to list, glob and read `hf://datasets/...`;
- errors with the status and `X-Error-Code` the Hub sends: a missing or private repository is 401 RepoNotFound
  without a token and 404 RepoNotFound with one; an unknown token is 401 "Invalid credentials in Authorization
  header"; writing to another user's repository is 403; EntryNotFound and RevisionNotFound are 404.

Not reproduced: LFS and Xet transfers (no file is ever "lfs"; a commit naming an lfsFile is refused), redirects
(the Hub redirects LFS and Xet files to a CDN; regular files, all there are here, it serves directly), rate limits,
gated and disabled repositories, organisations, pull requests, tags, `parentCommit`, pagination of tree listings,
uploads to dataset repositories, Space repositories, and repo ids without a namespace in URLs. A request to any other
route is answered 404 and recorded in `HubServer.unhandled`, so a test sees when the client starts using something this
server lacks.

Failure injection: `HubServer.die_during_next_commit()` makes the server read half of the next commit's body and
then stop, as a crashed Hub would: that connection drops without an answer and nothing listens on the port any more,
until `restart()` brings the same repositories back on the same port.
"""

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
INVALID_TOKEN = "Invalid credentials in Authorization header"


def git_blob_id(content: bytes) -> str:
    """The git object id of a file: what the Hub returns as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    message: str
    parent: str | None
    date: str


@dataclass
class Repo:
    repo_id: str
    owner: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)


class HubError(Exception):
    """An error answer: status, `X-Error-Code`, message, and the commit a missing entry was looked up in."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class ServerDied(Exception):
    """Raised inside a handler to drop its connection without an answer."""


class HubServer:
    """The server and its state. `users` maps each accepted token to a user name."""

    def __init__(self, users: dict[str, str]):
        self.users = dict(users)
        self.repos: dict[str, Repo] = {}  # model repositories
        self.datasets: dict[str, Repo] = {}  # dataset repositories (read only over HTTP)
        self.requests: list[str] = []  # "METHOD path" of every request, in order
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._die_in_commit = False
        self._httpd: ThreadingHTTPServer | None = None
        self._dying: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "HubServer":
        if self._dying is not None:  # the listening socket of a dead server must be closed before the port is reused
            self._dying.join()
            self._dying = None
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def restart(self) -> None:
        """Serve the same repositories again on the same port, after `stop` or a death."""
        self.stop()
        self.start()

    @property
    def alive(self) -> bool:
        return self._httpd is not None

    def die_during_next_commit(self) -> None:
        self._die_in_commit = True

    def _die(self) -> None:
        self._die_in_commit = False
        httpd, self._httpd = self._httpd, None
        self._dying = threading.Thread(target=lambda: (httpd.shutdown(), httpd.server_close()), daemon=True)
        self._dying.start()

    # ------------------------------------------------------------------ state

    def _new_commit(self, repo: Repo, files: dict[str, bytes], message: str, parent: str | None) -> Commit:
        digest = hashlib.sha1(f"{repo.repo_id}\0{parent}\0{message}\0{next(self._counter)}".encode())
        for path in sorted(files):
            digest.update(f"\0{path}\0{git_blob_id(files[path])}".encode())
        commit = Commit(digest.hexdigest(), files, message, parent, _now())
        repo.commits[commit.sha] = commit
        return commit

    def create_repo(self, repo_id: str, owner: str, private: bool = False, repo_type: str = "model") -> Repo:
        repo = Repo(repo_id, owner, private, _now())
        repo.branches["main"] = self._new_commit(repo, {".gitattributes": GITATTRIBUTES}, "initial commit", None).sha
        self._store(f"{repo_type}s")[repo_id] = repo
        return repo

    def add_files(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", message: str = "add") -> str:
        """A commit on main adding (or replacing) `files`, made on the server's side; returns its sha."""
        with self._lock:
            repo = self._store(f"{repo_type}s")[repo_id]
            parent = repo.branches["main"]
            commit = self._new_commit(repo, {**repo.commits[parent].files, **files}, message, parent)
            repo.branches["main"] = commit.sha
        return commit.sha

    def _store(self, kind: str) -> dict[str, Repo]:
        """The repositories of a URL's kind: "models" or "datasets"."""
        return self.datasets if kind == "datasets" else self.repos

    def user(self, authorization: str | None) -> str | None:
        """The user a request's `Authorization: Bearer` token belongs to; None without a token; 401 if unknown."""
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.users:
            raise HubError(401, INVALID_TOKEN)
        return self.users[token]

    def readable(self, repo_id: str, user: str | None, kind: str = "models") -> Repo:
        repo = self._store(kind).get(repo_id)
        if repo is None or (repo.private and user != repo.owner):
            # The Hub does not reveal whether a private repository exists.
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def writable(self, repo_id: str, user: str | None) -> Repo:
        repo = self.readable(repo_id, user)
        if user != repo.owner:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    @staticmethod
    def commit_at(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def model_info(self, repo: Repo, commit: Commit) -> dict:
        card = _card_metadata(commit.files.get("README.md", b""))
        return {
            "id": repo.repo_id,
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "downloads": 0,
            "likes": 0,
            "tags": card.get("tags") or [],
            "pipeline_tag": card.get("pipeline_tag"),
            "library_name": card.get("library_name"),
            "cardData": card or None,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _card_metadata(readme: bytes) -> dict:
    text = readme.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    metadata = yaml.safe_load(text.split("---", 2)[1])
    return metadata if isinstance(metadata, dict) else {}


def _tree(commit: Commit, folder: str, recursive: bool) -> list[dict]:
    """The Hub's tree listing of `folder` ('' for the root): files and, unless recursive, folders, sorted."""
    prefix = f"{folder}/" if folder else ""
    entries: dict[str, dict] = {}
    for path, content in commit.files.items():
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        if recursive or "/" not in rest:
            entries[path] = {"type": "file", "oid": git_blob_id(content), "size": len(content), "path": path}
            parts = rest.split("/")[:-1] if recursive else []
        else:
            parts = rest.split("/")[:1]
        for depth in range(1, len(parts) + 1):
            name = prefix + "/".join(parts[:depth])
            entries[name] = {
                "type": "directory",
                "oid": hashlib.sha1(name.encode()).hexdigest(),
                "size": 0,
                "path": name,
            }
    if folder and not entries:
        raise HubError(404, f"{folder} does not exist on revision", "EntryNotFound", commit.sha)
    return [entries[name] for name in sorted(entries)]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: the tests read `hub.requests` instead
        pass

    # Routing -----------------------------------------------------------------------------------------------------

    def do_HEAD(self):
        self._dispatch(body=False)

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self, body: bool = True) -> None:
        url = urlsplit(self.path)
        segments = [unquote(part) for part in url.path.split("/")[1:]]
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        hub = self.hub
        if not hub.alive:  # a dead server answers nothing, not even on connections the client kept open
            self.close_connection = True
            return
        hub.requests.append(f"{self.command} {url.path}")
        try:
            with hub._lock:
                user = hub.user(self.headers.get("Authorization"))
            route = self._route(segments)
            if route is None:
                hub.unhandled.append(f"{self.command} {url.path}")
                raise HubError(404, f"no route for {self.command} {url.path} in tests/hub_server.py")
            route(user, segments, query, body)
        except HubError as error:
            self._error(error, body)
        except ServerDied:
            self.close_connection = True
            hub._die()

    def _route(self, s: list[str]):
        method, n = self.command, len(s)
        if method == "GET" and s == ["api", "whoami-v2"]:
            return self.whoami
        if method == "POST" and s == ["api", "repos", "create"]:
            return self.create_repo
        if method == "POST" and s == ["api", "validate-yaml"]:
            return self.validate_yaml
        if method == "GET" and s == ["api", "agent-harnesses"]:
            return self.agent_harnesses
        if n >= 4 and s[0] == "api" and s[1] in ("models", "datasets"):
            action = s[4] if n > 4 else None
            if method == "GET" and (n == 4 or (action == "revision" and n == 6)):
                return self.repo_info
            if method == "GET" and action == "tree" and n >= 6:
                return self.tree
            if method == "POST" and action == "paths-info" and n == 6:
                return self.paths_info
            if s[1] == "models" and method == "POST" and action in ("preupload", "commit", "branch") and n == 6:
                return {"preupload": self.preupload, "commit": self.commit, "branch": self.create_branch}[action]
        if method in ("GET", "HEAD") and n >= 5 and s[2] == "resolve":
            return self.resolve
        if method in ("GET", "HEAD") and n >= 6 and s[0] == "datasets" and s[3] == "resolve":
            return self.resolve
        return None

    # Answers -----------------------------------------------------------------------------------------------------

    def _send(self, status: int, content: bytes, headers: dict[str, str], body: bool = True) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def _json(self, payload, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _error(self, error: HubError, body: bool) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        if error.commit:
            headers["X-Repo-Commit"] = error.commit
        self._send(error.status, json.dumps({"error": error.message}).encode(), headers, body)

    def _read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_json(self) -> dict:
        return json.loads(self._read_body() or b"{}")

    # Endpoints ---------------------------------------------------------------------------------------------------

    def whoami(self, user, s, query, body):
        if user is None:
            raise HubError(401, INVALID_TOKEN)
        self._json(
            {
                "type": "user",
                "name": user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"role": "write"}},
            }
        )

    def agent_harnesses(self, user, s, query, body):
        """The registry huggingface_hub fetches (once a day) to name the coding agent in its user agent: none here."""
        self._json({"standardEnvVars": [], "harnesses": {}})

    def create_repo(self, user, s, query, body):
        payload = self._read_json()
        if user is None:
            raise HubError(401, "You must be authenticated to create a repository")
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        with self.hub._lock:
            if namespace != user:
                raise HubError(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
            if repo_id in self.hub.repos:
                self._json(
                    {"error": "You already created this model repo", "url": f"{self.hub.endpoint}/{repo_id}"}, 409
                )
                return
            self.hub.create_repo(repo_id, user, private=payload.get("visibility") == "private")
        self._json({"url": f"{self.hub.endpoint}/{repo_id}", "name": repo_id})

    def validate_yaml(self, user, s, query, body):
        try:
            _card_metadata(self._read_json().get("content", "").encode())
        except yaml.YAMLError as error:
            self._json({"errors": [{"message": str(error)}], "warnings": []}, 400)
            return
        self._json({"errors": [], "warnings": []})

    def repo_info(self, user, s, query, body):
        with self.hub._lock:
            repo = self.hub.readable(f"{s[2]}/{s[3]}", user, s[1])
            commit = self.hub.commit_at(repo, s[5] if len(s) == 6 else "main")
            self._json(self.hub.model_info(repo, commit))

    def tree(self, user, s, query, body):
        with self.hub._lock:
            repo = self.hub.readable(f"{s[2]}/{s[3]}", user, s[1])
            commit = self.hub.commit_at(repo, s[5])
            self._json(_tree(commit, "/".join(s[6:]).strip("/"), query.get("recursive", "").lower() in ("1", "true")))

    def paths_info(self, user, s, query, body):
        """The tree entries of the form's `paths` that exist (files, and folders holding files), as the Hub answers."""
        paths = parse_qs(self._read_body().decode()).get("paths", [])
        with self.hub._lock:
            repo = self.hub.readable(f"{s[2]}/{s[3]}", user, s[1])
            commit = self.hub.commit_at(repo, s[5])
            entries = []
            for path in (path.strip("/") for path in paths):
                if path in commit.files:
                    content = commit.files[path]
                    entries.append({"type": "file", "oid": git_blob_id(content), "size": len(content), "path": path})
                elif any(name.startswith(f"{path}/") for name in commit.files):
                    entries.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "path": path})
            self._json(entries)

    def preupload(self, user, s, query, body):
        payload = self._read_json()
        with self.hub._lock:
            repo = self.hub.writable(f"{s[2]}/{s[3]}", user)
            commit = self.hub.commit_at(repo, s[5])
            files = [
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_id(commit.files[item["path"]]) if item["path"] in commit.files else None,
                }
                for item in payload["files"]
            ]
        self._json({"files": files, "commitOid": commit.sha})

    def commit(self, user, s, query, body):
        repo_id, branch = f"{s[2]}/{s[3]}", s[5]
        if self.hub._die_in_commit:
            self.rfile.read(int(self.headers.get("Content-Length") or 0) // 2)
            raise ServerDied
        lines = [json.loads(line) for line in self._read_body().splitlines() if line.strip()]
        with self.hub._lock:
            repo = self.hub.writable(repo_id, user)
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            files = dict(repo.commits[repo.branches[branch]].files)
            header = {}
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    header = value
                elif key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {path: content for path, content in files.items() if not path.startswith(prefix)}
                else:
                    raise HubError(400, f"{key} is not supported by tests/hub_server.py (regular files only)")
            commit = self.hub._new_commit(repo, files, header.get("summary", ""), repo.branches[branch])
            repo.branches[branch] = commit.sha
        self._json(
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self.hub.endpoint}/{repo_id}/commit/{commit.sha}",
            }
        )

    def create_branch(self, user, s, query, body):
        payload = self._read_json()
        with self.hub._lock:
            repo = self.hub.writable(f"{s[2]}/{s[3]}", user)
            if s[5] in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{s[5]}")
            repo.branches[s[5]] = self.hub.commit_at(repo, payload.get("startingPoint") or "main").sha
        self._json({})

    def resolve(self, user, s, query, body):
        kind = "datasets" if s[0] == "datasets" else "models"
        s = s[1:] if kind == "datasets" else s
        path = "/".join(s[4:])
        with self.hub._lock:
            repo = self.hub.readable(f"{s[0]}/{s[1]}", user, kind)
            commit = self.hub.commit_at(repo, s[3])
            if path not in commit.files:
                raise HubError(404, "Entry not found", "EntryNotFound", commit.sha)
            content = commit.files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_id(content)}"',
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
        }
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
        if ranged and int(ranged[1]) < len(content):
            start, end = int(ranged[1]), min(int(ranged[2] or len(content) - 1), len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            self._send(206, content[start : end + 1], headers, body)
            return
        self._send(200, content, headers, body)
