"""What keeps one client from taking the server: a cap on request bodies (an ASGI middleware), a cap on the jobs
one session or address may have queued or running, a bound on the files gradio's cache folder holds, and cached
images written once and atomically."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

from maskmamba import limits

log = logging.getLogger(__name__)
Scope = dict[str, Any]
Message = dict[str, Any]
MAX_CACHE_FILES = 400  # gradio's cache (step previews, uploads, downloads): the oldest go beyond this
MAX_CACHE_AGE_S = 3600  # and nothing stays longer than this


class BodyTooLarge(Exception):
    """A request body ran past its cap while it was being read."""


class BodyLimit:
    """ASGI middleware: refuses (413, JSON detail) a request whose body is over MAX_BODY_BYTES (multipart
    uploads) or MAX_JSON_BYTES (anything else), by its Content-Length or, when that is absent or false, while
    the body streams in."""

    def __init__(self, app: Callable, multipart: int = limits.MAX_BODY_BYTES, other: int = limits.MAX_JSON_BYTES):
        self.app, self.multipart, self.other = app, multipart, other

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cap = self.multipart if headers.get(b"content-type", b"").startswith(b"multipart/") else self.other
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > cap:
            return await _refuse(send, cap)
        received, answered = 0, False

        async def limited_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    if not answered:
                        answered = True
                        await _refuse(send, cap)
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                if answered:
                    return
                answered = True
            elif received > cap:
                return  # the app's own answer to the cut body; ours went first
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass


async def _refuse(send: Callable[[Message], Awaitable[None]], cap: int) -> None:
    body = json.dumps({"detail": f"request body too large: the limit is {cap:,} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def limit_jobs_per_client(queue: Any, per_session: int = limits.PER_SESSION_JOBS,
                          per_address: int = limits.PER_ADDRESS_JOBS) -> None:
    """Make gradio's `queue` refuse, as "queue full", a job whose session or client address already has
    `per_session` / `per_address` jobs queued or running (gradio itself bounds only the whole queue)."""
    push = queue.push

    async def push_within_share(body: Any, request: Any, username: str | None) -> tuple:
        events = list(queue.event_ids_to_events.values())
        session, address = body.session_hash, _address(request)
        if session is not None and sum(e.session_hash == session for e in events) >= per_session:
            return False, f"Queue full for this session: at most {per_session} runs at a time; wait for one to end.", \
                "queue_full"
        if address is not None and sum(_address(e.request) == address for e in events) >= per_address:
            return False, f"Queue full for this address: at most {per_address} runs at a time.", "queue_full"
        return await push(body=body, request=request, username=username)

    queue.push = push_within_share


def _address(request: Any) -> str | None:
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


class CacheJanitor:
    """Keeps the files a gradio app wrote to its cache (per-step previews, uploads, downloads) to at most
    `max_files`, none older than `max_age_s`: the oldest go first. Only files the app's blocks track are touched,
    never those gradio keeps (`keep_in_cache`: the page's examples), so other apps sharing the folder are safe.
    `sweep` does one pass; `start` runs it every `every_s` seconds on a daemon thread until `stop`. `deleted`
    counts the files it removed."""

    def __init__(self, blocks: Any, max_files: int = MAX_CACHE_FILES, max_age_s: float = MAX_CACHE_AGE_S):
        self.blocks, self.max_files, self.max_age_s = blocks, max_files, max_age_s
        self.deleted = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def tracked(self) -> list[tuple[float, str, set]]:
        """(modification time, path, the set that tracks it) of every file the app may delete, oldest first;
        entries whose file is gone already are dropped from their sets."""
        keep = set().union(*(getattr(b, "keep_in_cache", set()) for b in list(self.blocks.blocks.values())))
        files = []
        for owner in list(self.blocks.temp_file_sets):
            for path in list(owner):
                if path in keep:
                    continue
                try:
                    files.append((Path(path).stat().st_mtime, path, owner))
                except FileNotFoundError:
                    owner.discard(path)
        return sorted(files, key=lambda f: f[0])

    def sweep(self) -> int:
        """Delete what is over the bounds; returns how many files went."""
        with self._lock:
            files = self.tracked()
            cutoff = time.time() - self.max_age_s
            doomed = files[: max(0, len(files) - self.max_files)] + [f for f in files if f[0] < cutoff]
            gone = set()
            for _, path, owner in doomed:
                if path in gone:
                    continue
                gone.add(path)
                Path(path).unlink(missing_ok=True)
                owner.discard(path)
                folder = Path(path).parent
                if folder != Path(self.blocks.GRADIO_CACHE):  # gradio gives each file a folder; drop it once empty
                    with contextlib.suppress(OSError):
                        folder.rmdir()
            self.deleted += len(gone)
            return len(gone)

    def start(self, every_s: float = 2.0) -> threading.Thread:
        def run() -> None:
            while not self._stopped.wait(every_s):
                try:
                    self.sweep()
                except OSError as err:  # a permission, a vanished folder: keep going
                    log.warning("cache sweep: %s", err)

        thread = threading.Thread(target=run, name="cache-janitor", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopped.set()


def atomic_cache_writes() -> None:
    """Make gradio write each cached image once and atomically. Its cache names a file by the hash of its bytes and
    rewrote the file in place whenever the same image came again (an inpainting overlay unchanged from one step to
    the next), so a browser or client still reading the earlier answer could get a truncated file. Now a file that
    is there already is only touched (its age restarts, for the CacheJanitor), and a new one is written under a
    temporary name and renamed into place. Idempotent."""
    import gradio.processing_utils as cache

    if getattr(cache.save_pil_to_cache, "atomic", False):
        return

    def save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = cache.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / cache.hash_bytes(data)
        path = (folder / f"{name}.{format}").resolve()
        try:
            os.utime(path)  # these very bytes are there already
        except FileNotFoundError:
            folder.mkdir(exist_ok=True, parents=True)
            part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
            part.write_bytes(data)
            os.replace(part, path)
        return str(path)

    save_pil_to_cache.atomic = True
    cache.save_pil_to_cache = save_pil_to_cache  # save_img_array_to_cache and the components look it up here


def readable_errors() -> None:
    """Make gradio answer every failed request with a short readable message, never `{"error": null}`.

    gradio checks uploaded-file paths and the shape of file values before any component code runs, and reports
    what fails there (a path it refuses, a value of the wrong shape) with no message unless `show_error` is on,
    which would pass on any exception's text whole. Here those errors get a message of their own, at most
    ECHO_CHARS of the value repeated; gr.Error messages pass as they are. Idempotent."""
    import gradio.queueing
    import gradio.utils

    if getattr(gradio.utils.error_payload, "readable", False):
        return
    original = gradio.utils.error_payload

    def error_payload(error: BaseException | None, show_error: bool) -> dict:
        from gradio.exceptions import Error as AppError

        if error is None or isinstance(error, AppError):
            return original(error, show_error)
        return original(AppError(_message(error), print_exception=False), show_error)

    error_payload.readable = True
    gradio.utils.error_payload = gradio.queueing.error_payload = error_payload


def _message(error: BaseException) -> str:
    from gradio.exceptions import InvalidPathError
    from pydantic import ValidationError

    if isinstance(error, InvalidPathError):
        return "that file cannot be used: send an image uploaded to this server (or one of the page's examples)"
    if isinstance(error, ValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))[: limits.ECHO_CHARS] or "the top level"
        return f"a value has the wrong shape at {where}: {str(first.get('msg', ''))[: limits.ECHO_CHARS]}"
    log.warning("request failed: %s", limits.short(f"{type(error).__name__}: {error}", 200))
    return "the server could not process this request (logged); check its values and try again"
