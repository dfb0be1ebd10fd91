"""The write side of the stand-in hub: offline, hub writes and logins succeed without touching the network.

run.py puts this folder on PYTHONPATH for both runs of an entry (plain and under ftdoctor), only when the
environment says FTD_REALWORLD_STANDIN=1. Notebooks and scripts call `notebook_login()`, pass `push_to_hub=True`
(the Trainer creates the repository when it starts) or call `push_to_hub()` at the end; offline each of these
raises at once. Here `create_repo`, `upload_folder`, `upload_file`, `create_commit`, `create_branch`, `whoami`
and the login helpers answer as the hub would, and nothing is sent. Reading models and datasets still goes
through the offline cache (the stand-in hub that build_hub.py writes).
"""

import os


def _install() -> None:
    import concurrent.futures

    import huggingface_hub
    from huggingface_hub import hf_api

    user = "standin-user"

    def repo_url(repo_id, repo_type=None):
        repo_id = repo_id if "/" in str(repo_id) else f"{user}/{repo_id}"
        prefix = "" if repo_type in (None, "model") else f"{repo_type}s/"
        return hf_api.RepoUrl(f"https://huggingface.co/{prefix}{repo_id}")

    def commit_info(repo_id, message):
        return hf_api.CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}",
            commit_message=message or "stand-in commit",
            commit_description="",
            oid="0" * 40,
        )

    def maybe_future(value, kwargs):
        if kwargs.get("run_as_future"):
            future = concurrent.futures.Future()
            future.set_result(value)
            return future
        return value

    def create_repo(self, repo_id, *args, **kwargs):
        return repo_url(repo_id, kwargs.get("repo_type"))

    def upload(self, *args, **kwargs):
        repo_id = kwargs.get("repo_id") or (args[0] if args else "repo")
        return maybe_future(commit_info(repo_id, kwargs.get("commit_message")), kwargs)

    def whoami(self, *args, **kwargs):
        return {
            "type": "user",
            "name": user,
            "fullname": "Stand-in User",
            "orgs": [],
            "auth": {"accessToken": {"role": "write"}},
        }

    def create_branch(self, *args, **kwargs):
        return None

    patches = {
        "create_repo": create_repo,
        "upload_folder": upload,
        "upload_file": upload,
        "create_commit": upload,
        "upload_large_folder": upload,
        "create_branch": create_branch,
        "create_tag": create_branch,
        "whoami": whoami,
    }
    api = hf_api.HfApi()
    for name, fn in patches.items():
        setattr(hf_api.HfApi, name, fn)
        bound = getattr(api, name)
        for module in (hf_api, huggingface_hub):
            if hasattr(module, name):
                setattr(module, name, bound)

    def login(*args, **kwargs):
        return None

    from huggingface_hub import _login

    for name in ("login", "logout", "notebook_login", "interpreter_login"):
        for module in (_login, huggingface_hub):
            if hasattr(module, name) or module is huggingface_hub:
                setattr(module, name, login)


if os.environ.get("FTD_REALWORLD_STANDIN") == "1":
    try:
        _install()
    except Exception as exc:  # a hub library without these names: leave it as it is, and say so
        import sys

        print(f"[stand-in hub] hub writes not stood in: {exc!r}", file=sys.stderr)
