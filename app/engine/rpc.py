"""llama.cpp's RPC backend: workers that lend a machine's device to a model loaded elsewhere.

Two sides, both without Qt:

- **A worker** (:class:`WorkerProcess`): a child process that calls
  ``ggml_backend_rpc_start_server(endpoint, cache_dir, n_threads, n_devices, devices)`` for
  this machine's best device (a GPU when there is one, else the CPU). That call is all of
  llama.cpp's ``rpc-server``: it accepts one client at a time and never returns. The child
  announces its device and free memory to the parent, and answers memory queries while it
  serves.
- **The engine child** (:func:`register_workers`): before a model loads, each worker's
  endpoint is checked from Python (:func:`probe`: llama.cpp aborts the whole process when
  ``ggml_backend_rpc_add_server`` cannot connect), then registered with
  ``ggml_backend_rpc_add_server`` + ``ggml_backend_register``, which makes each worker's
  device a ggml device (type GPU) that llama.cpp offloads layers to. :func:`use_workers`
  chooses which registered workers the next ``Llama(...)`` may use (an explicit device list
  in ``llama_model_params.devices``), so a worker registered earlier and lost since is never
  touched again.

Every function pointer comes from libllama's own handle (``llama_cpp.llama_cpp._lib``):
the wheel ships *copies* of the ggml libraries, and a second copy loaded by path would have
its own device registry, which llama.cpp never sees.

The protocol has no authentication: a worker must listen on loopback or on a trusted
network only (``paddock worker`` enforces an allow-list of client addresses in front of it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import logging
import multiprocessing as mp
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from app.engine.types import PlacedDevice
from app.errors import WorkerError

log = logging.getLogger(__name__)

DEFAULT_PORT = 50052  # llama.cpp's rpc-server default
PROBE_TIMEOUT_S = 3.0
START_TIMEOUT_S = 60.0
BUSY_GRACE_S = 2.0  # how long a reload waits for a worker to notice the last model's connection closed
# A Paddock worker answers this first line with one JSON line (its device, memory and whether a
# client is connected). Its first byte ('P' = 80) is no RPC command (they end at 18), so a plain
# llama.cpp rpc-server closes the connection, and :func:`probe` falls back to the RPC protocol.
STATUS_REQUEST = b"PADDOCK-STATUS\n"

# The RPC protocol (ggml/src/ggml-rpc/ggml-rpc.cpp, protocol 7.0.0): | cmd u8 | size u64 | data |,
# answered by | size u64 | data |.
RPC_CMD_GET_DEVICE_MEMORY = 11
RPC_CMD_HELLO = 14
RPC_CMD_DEVICE_COUNT = 15
RPC_PROTO_MAJOR = 7
_CONN_CAPS = 24  # RPC_CONN_CAPS_SIZE: zeros ask for plain TCP

# enum ggml_backend_dev_type
DEV_CPU, DEV_GPU, DEV_IGPU, DEV_ACCEL = 0, 1, 2, 3
_DEV_KINDS = {DEV_CPU: "cpu", DEV_GPU: "gpu", DEV_IGPU: "igpu", DEV_ACCEL: "accel"}


@dataclass(frozen=True)
class DeviceInfo:
    """A ggml device: ``name`` as llama.cpp logs it (``CPU``, ``CUDA0``, ``RPC0``), its description
    (a worker's is its endpoint), kind (``cpu``, ``gpu``, ``igpu``) and memory in bytes."""

    name: str
    description: str
    kind: str
    memory_free: int
    memory_total: int


@dataclass(frozen=True)
class WorkerStatus:
    """What :func:`probe` learnt about a worker at ``endpoint`` (``host:port``)."""

    endpoint: str
    reachable: bool
    device: str = ""  # "CPU (Intel Xeon ...)", or "" when the worker does not say (a plain rpc-server)
    memory_free: int = 0
    memory_total: int = 0
    busy: bool = False  # another client is connected: the worker serves one at a time
    error: str = ""  # why it is not usable, in words

    @property
    def usable(self) -> bool:
        return self.reachable and not self.busy and not self.error


@dataclass(frozen=True)
class RegisteredWorker:
    """A worker registered in this process: its endpoint and the ggml devices it became."""

    endpoint: str
    devices: tuple[str, ...]  # ggml device names ("RPC0", ...)
    memory_free: int
    memory_total: int


# -- endpoints -------------------------------------------------------------------------------


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets: ``[::1]:50052``) as (host, port).

    Raises:
        WorkerError: not of that form.
    """
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise WorkerError(f"{text!r} is not a worker address: write HOST:PORT, e.g. 192.168.1.20:{DEFAULT_PORT}")
    return host, int(port_text)


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (a small race remains until it is bound again)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# -- probing a worker from Python ------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("the worker closed the connection")
        data += part
    return data


def _rpc_call(sock: socket.socket, cmd: int, payload: bytes, answer: int) -> bytes:
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8))
    if size != answer:
        raise ConnectionError(f"unexpected answer size {size} to RPC command {cmd}")
    return _recv_exact(sock, size)


def _paddock_status(addr: str, host: str, port: int, timeout: float) -> WorkerStatus | None:
    """A Paddock worker's own status line; None from a plain rpc-server (it closes at once)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(STATUS_REQUEST)
        data = b""
        try:
            while not data.endswith(b"\n") and len(data) < 65536:
                part = sock.recv(4096)
                if not part:
                    break
                data += part
        except ConnectionResetError:
            return None  # a plain rpc-server closes with our line unread, which resets the connection
        except TimeoutError:
            # Connected, but no answer: a plain rpc-server serving another client reads nothing until
            # that client is done (a Paddock worker answers at once, even while busy).
            return WorkerStatus(addr, True, busy=True,
                                error="it accepts connections but does not answer: it is serving another client")
    if not data:
        return None
    try:
        info = json.loads(data)
        protocol = int(info.get("protocol", RPC_PROTO_MAJOR))
        return WorkerStatus(addr, True, str(info["device"]), int(info["memory_free"]), int(info["memory_total"]),
                            bool(info.get("busy", False)),
                            "" if protocol == RPC_PROTO_MAJOR else
                            f"it speaks RPC protocol {protocol}, this Paddock {RPC_PROTO_MAJOR}: run the same Paddock "
                            "(llama.cpp) version on both")
    except (ValueError, KeyError, TypeError):
        return WorkerStatus(addr, True, error="it answered, but is not a llama.cpp RPC worker")


def _rpc_status(addr: str, host: str, port: int, timeout: float) -> WorkerStatus:
    """The RPC protocol's own hello, device count and memory of the first device."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            hello = _rpc_call(sock, RPC_CMD_HELLO, bytes(_CONN_CAPS), 4 + _CONN_CAPS)
        except TimeoutError:
            return WorkerStatus(addr, True, busy=True,
                                error="it accepts connections but does not answer: it is serving another client")
        if hello[0] != RPC_PROTO_MAJOR:
            return WorkerStatus(addr, True, error=f"it speaks RPC protocol {hello[0]}.{hello[1]}.{hello[2]}, "
                                f"this Paddock {RPC_PROTO_MAJOR}.x: run the same llama.cpp version on both")
        (count,) = struct.unpack("<I", _rpc_call(sock, RPC_CMD_DEVICE_COUNT, b"", 4))
        if count == 0:
            return WorkerStatus(addr, True, error="it serves no device")
        free, total = struct.unpack("<QQ", _rpc_call(sock, RPC_CMD_GET_DEVICE_MEMORY, struct.pack("<I", 0), 16))
        return WorkerStatus(addr, True, "" if count == 1 else f"{count} devices", free, total)


def probe(addr: str, timeout: float = PROBE_TIMEOUT_S) -> WorkerStatus:
    """Whether the worker at ``addr`` (``host:port``) answers, with its device and free memory.

    Never raises for an unreachable or odd worker: ``reachable``/``error`` say what happened.
    A Paddock worker answers with its device even while a client is connected; a plain
    rpc-server is asked through the RPC protocol, which it answers only when idle.

    Raises:
        WorkerError: ``addr`` is not ``HOST:PORT``.
    """
    host, port = parse_endpoint(addr)
    try:
        status = _paddock_status(addr, host, port, timeout)
        if status is not None:
            return status
        return _rpc_status(addr, host, port, timeout)
    except TimeoutError:
        return WorkerStatus(addr, False, error=f"no answer from {addr} within {timeout:g} s")
    except ConnectionRefusedError:
        return WorkerStatus(addr, False, error=f"nothing listens at {addr} (is `paddock worker` running there?)")
    except ConnectionError as exc:
        return WorkerStatus(addr, False, error=f"{addr} closed the connection without answering ({exc}): a worker "
                            "refuses computers that are not in its --allow list")
    except (OSError, struct.error) as exc:
        return WorkerStatus(addr, False, error=f"cannot reach {addr}: {exc}")


# -- the native side: libllama's handle ------------------------------------------------------


def _lib() -> Any:
    """libllama's ctypes handle with the ggml functions used here typed (idempotent)."""
    from llama_cpp import llama_cpp as bindings

    lib = bindings._lib
    if getattr(lib, "_paddock_rpc_typed", False):
        return lib
    vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    for name, args, res in (
        ("ggml_backend_dev_count", [], sz),
        ("ggml_backend_dev_get", [sz], vp),
        ("ggml_backend_dev_name", [vp], cp),
        ("ggml_backend_dev_description", [vp], cp),
        ("ggml_backend_dev_type", [vp], ctypes.c_int),
        ("ggml_backend_dev_memory", [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
        ("ggml_backend_dev_backend_reg", [vp], vp),
        ("ggml_backend_reg_name", [vp], cp),
        ("ggml_backend_reg_by_name", [cp], vp),
        ("ggml_backend_reg_get_proc_address", [vp, cp], vp),
        ("ggml_backend_reg_dev_count", [vp], sz),
        ("ggml_backend_reg_dev_get", [vp, sz], vp),
        ("ggml_backend_register", [vp], None),
    ):
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    lib._paddock_rpc_typed = True
    return lib


def _rpc_proc(name: str) -> int:
    """A function of the RPC backend, from the registry of libllama's ggml (not another copy).

    Raises:
        WorkerError: this llama.cpp build has no RPC backend.
    """
    lib = _lib()
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise WorkerError("this llama.cpp build has no RPC backend (GGML_RPC): rebuild with "
                          "python scripts/install_llama_cpp.py")
    fn: int | None = lib.ggml_backend_reg_get_proc_address(reg, name.encode())
    if not fn:
        raise WorkerError(f"llama.cpp's RPC backend lacks {name}")
    return fn


def _device_info(dev: int) -> DeviceInfo:
    lib = _lib()
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    return DeviceInfo(
        name=(lib.ggml_backend_dev_name(dev) or b"").decode(errors="replace"),
        description=(lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
        kind=_DEV_KINDS.get(int(lib.ggml_backend_dev_type(dev)), "other"),
        memory_free=int(free.value),
        memory_total=int(total.value),
    )


def _is_rpc_device(dev: int) -> bool:
    lib = _lib()
    reg = lib.ggml_backend_dev_backend_reg(dev)
    return bool(reg) and (lib.ggml_backend_reg_name(reg) or b"") == b"RPC"


def _local_devices() -> list[int]:
    """This process's ggml devices that are not RPC workers, in registry order."""
    lib = _lib()
    devs = [lib.ggml_backend_dev_get(i) for i in range(lib.ggml_backend_dev_count())]
    return [d for d in devs if d and not _is_rpc_device(d)]


def best_device() -> tuple[int, DeviceInfo]:
    """This machine's device a worker should serve: the GPU with the most memory, else an
    integrated GPU, else the CPU.

    Raises:
        WorkerError: llama.cpp reports no device at all.
    """
    devices = [(d, _device_info(d)) for d in _local_devices()]
    for kind in ("gpu", "igpu", "cpu"):
        found = [(d, info) for d, info in devices if info.kind == kind]
        if found:
            return max(found, key=lambda pair: pair[1].memory_total)
    raise WorkerError("llama.cpp reports no device on this machine")


def local_devices() -> list[DeviceInfo]:
    """This machine's own ggml devices (CPU, GPUs), without the workers."""
    return [_device_info(d) for d in _local_devices()]


# -- the worker child process ----------------------------------------------------------------


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _worker_main(conn: Connection, addr: str, cache_dir: str | None, n_threads: int, quiet: bool) -> None:
    """Entry point of a worker child: serve the best device at ``addr`` until the parent goes."""
    if quiet:
        # ggml's rpc server prints its banner and every connection on stdout (C's printf)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    try:
        dev, info = best_device()
        start_server = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_void_p))(_rpc_proc("ggml_backend_rpc_start_server"))
    except WorkerError as exc:
        conn.send(("failed", str(exc)))
        return
    devices = (ctypes.c_void_p * 1)(dev)
    ended = threading.Event()

    def serve() -> None:
        # Returns only when the server could not start (the port is taken, say).
        start_server(addr.encode(), cache_dir.encode() if cache_dir else None, n_threads, 1, devices)
        ended.set()

    threading.Thread(target=serve, name="rpc-server", daemon=True).start()
    host, port = parse_endpoint(addr)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _listening(host, port):
        if ended.is_set() or time.monotonic() > deadline:
            conn.send(("failed", f"the worker could not listen at {addr} (the port may be in use)"))
            return
        time.sleep(0.05)
    conn.send(("ready", info))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # the parent is gone: so is the worker
        if request == "memory":
            conn.send(("memory", _device_info(dev)))
        elif request == "stop":
            os._exit(0)


class WorkerProcess:
    """A worker serving this machine's best device at ``host:port`` from a child process.

    Args:
        host: the address ggml listens on.
        port: 0 picks a free port.
        threads: CPU threads for a CPU device (default: physical cores).
        cache_dir: where ggml keeps tensors sent before (by hash), so that a model loaded again
            is not sent again; None keeps no cache.
        quiet: silence ggml's banner and per-connection lines on stdout.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, threads: int | None = None,
                 cache_dir: str | None = None, quiet: bool = True) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.threads = threads
        self.cache_dir = cache_dir
        self.quiet = quiet
        self.device: DeviceInfo | None = None
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return endpoint(self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self, timeout: float = START_TIMEOUT_S) -> DeviceInfo:
        """Start serving; the device once it listens.

        Raises:
            WorkerError: it could not start (no RPC backend, port taken, no device).
        """
        from app.engine import hardware

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        threads = self.threads or hardware.physical_cores()
        proc = ctx.Process(target=_worker_main, name="paddock-worker", daemon=True,
                           args=(child, self.endpoint, self.cache_dir, threads, self.quiet))
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        kind: str = "failed"
        value: Any = f"the worker did not start within {timeout:g} s"
        try:
            if parent.poll(timeout):
                kind, value = parent.recv()
        except (EOFError, OSError):
            proc.join(2)
            value = f"the worker process ended at start (exit code {proc.exitcode})"
        if kind != "ready" or not isinstance(value, DeviceInfo):
            self.stop()
            raise WorkerError(str(value))
        self.device = value
        log.info("worker serving %s (%s) at %s", value.name, value.description, self.endpoint)
        return value

    def memory(self) -> DeviceInfo:
        """The device with its memory now (what a status request announces).

        Raises:
            WorkerError: the worker process is gone.
        """
        with self._lock:
            conn = self._conn
            if conn is None or not self.is_alive():
                raise WorkerError("the worker is not running")
            try:
                conn.send("memory")
                if conn.poll(10):
                    _, info = conn.recv()
                    assert isinstance(info, DeviceInfo)
                    self.device = info
                    return info
            except (EOFError, OSError) as exc:
                raise WorkerError("the worker stopped") from exc
            raise WorkerError("the worker did not answer")

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the child to end; its exit code (None: still running)."""
        if self._proc is None:
            return None
        self._proc.join(timeout)
        return self._proc.exitcode

    def stop(self) -> None:
        """End the worker (ggml's server has no stop of its own: the child exits)."""
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send("stop")
        proc.join(3)
        if proc.is_alive():
            proc.kill()
            proc.join(3)
        if conn is not None:
            conn.close()
        self._proc = self._conn = None

    def kill(self) -> None:
        """SIGKILL the worker (a machine lost mid-answer, in tests)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the engine side: registration ----------------------------------------------------------

# Per process: endpoint -> its registration, and the RPC devices the next load may use (None: no
# worker was ever registered, so llama.cpp's own default, every device, stands).
_registered: dict[str, RegisteredWorker] = {}
_device_ptrs: dict[str, list[int]] = {}
_selected: list[int] | None = None
_patched = False


def register_workers(addrs: Sequence[str], timeout: float = PROBE_TIMEOUT_S,
                     probe_fn: Callable[[str, float], WorkerStatus] = probe,
                     ) -> tuple[list[RegisteredWorker], list[WorkerStatus]]:
    """Register the workers at ``addrs`` as ggml devices in this process (once each), after
    checking each from Python, and select them for the next model load (:func:`use_workers`).

    Returns:
        (the registered workers, in order; the statuses of those left out and why).

    Raises:
        WorkerError: this llama.cpp build has no RPC backend.
    """
    # A worker lost later makes llama.cpp abort this process: an expected failure (the parent names the
    # worker), so no gdb backtrace of it on stderr.
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    usable: list[RegisteredWorker] = []
    left_out: list[WorkerStatus] = []
    for addr in dict.fromkeys(addrs):  # each once, in order
        if ":" in parse_endpoint(addr)[0]:
            # llama.cpp's RPC client splits HOST:PORT at the first colon and connects over IPv4 only; an IPv6
            # address would abort the process.
            left_out.append(WorkerStatus(addr, False, error="llama.cpp's RPC client reaches workers over IPv4 "
                                         "only: give its IPv4 address or host name"))
            continue
        status = probe_fn(addr, timeout)
        deadline = time.monotonic() + BUSY_GRACE_S
        while status.busy and addr in _registered and time.monotonic() < deadline:
            # Busy with this process's own connection of the model just unloaded, most likely: the worker
            # has not seen it close yet.
            time.sleep(0.1)
            status = probe_fn(addr, timeout)
        if not status.usable:
            left_out.append(status)
            continue
        known = _registered.get(addr)
        if known is None:
            known = _register(addr, status)
            if known is None:
                left_out.append(WorkerStatus(addr, True, error="it reported no device"))
                continue
        usable.append(RegisteredWorker(addr, known.devices, status.memory_free or known.memory_free,
                                       status.memory_total or known.memory_total))
    use_workers([w.endpoint for w in usable])
    return usable, left_out


def _register(addr: str, status: WorkerStatus) -> RegisteredWorker | None:
    lib = _lib()
    add_server = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(_rpc_proc("ggml_backend_rpc_add_server"))
    reg = add_server(addr.encode())
    if not reg:
        return None
    lib.ggml_backend_register(reg)
    ptrs = [lib.ggml_backend_reg_dev_get(reg, i) for i in range(lib.ggml_backend_reg_dev_count(reg))]
    names = tuple((lib.ggml_backend_dev_name(p) or b"").decode() for p in ptrs)
    worker = RegisteredWorker(addr, names, status.memory_free, status.memory_total)
    _registered[addr] = worker
    _device_ptrs[addr] = ptrs
    log.info("worker %s registered as %s", addr, ", ".join(names))
    return worker


def registered() -> dict[str, RegisteredWorker]:
    """The workers registered in this process, by endpoint."""
    return dict(_registered)


def device_endpoints() -> dict[str, str]:
    """ggml device name ("RPC0") -> the worker's endpoint, for the workers registered here."""
    return {name: w.endpoint for w in _registered.values() for name in w.devices}


def use_workers(addrs: Sequence[str]) -> None:
    """Let the next ``Llama(...)`` in this process use these registered workers (and this
    machine's own GPUs), and no other worker registered before.

    llama.cpp uses every registered device when ``llama_model_params.devices`` is NULL, and
    aborts the process when one of them no longer answers; so once a worker has been
    registered, every load gets an explicit list: the workers first (as llama.cpp orders them,
    to keep network transfers small), then the local GPUs; the CPU is always there.
    """
    global _selected
    if not _registered:
        return
    _install_devices_patch()
    ptrs = [p for a in addrs for p in _device_ptrs.get(a, [])]
    local = [d for d in _local_devices() if _device_info(d).kind in ("gpu", "igpu")]
    _selected = ptrs + local


def _install_devices_patch() -> None:
    """llama-cpp-python fills ``llama_model_params`` from ``llama_model_default_params()`` and has no
    ``devices`` argument: wrap that function (in this process only) so that it sets the list."""
    global _patched
    if _patched:
        return
    from llama_cpp import llama_cpp as bindings

    original = bindings.llama_model_default_params
    keep: list[Any] = []  # the arrays must outlive the loads that point at them

    def with_devices() -> Any:
        params = original()
        if _selected is not None:
            array = (ctypes.c_void_p * (len(_selected) + 1))(*_selected, None)
            keep[:] = [array]
            params.devices = ctypes.cast(array, ctypes.c_void_p)
        return params

    bindings.llama_model_default_params = with_devices
    _patched = True


def status_line(info: DeviceInfo, busy: bool) -> bytes:
    """A Paddock worker's answer to :data:`STATUS_REQUEST`."""
    payload = {"paddock_worker": 1, "protocol": RPC_PROTO_MAJOR, "device": f"{info.name} ({info.description})",
               **asdict(info), "busy": busy}
    return json.dumps(payload).encode() + b"\n"


@contextlib.contextmanager
def workers(count: int, **kwargs: Any) -> Iterator[list[WorkerProcess]]:
    """``count`` workers on 127.0.0.1, stopped on exit (tests and benchmarks)."""
    started: list[WorkerProcess] = []
    try:
        for _ in range(count):
            w = WorkerProcess("127.0.0.1", **kwargs)
            w.start()
            started.append(w)
        yield started
    finally:
        for w in started:
            w.stop()


# -- where a load put things: llama.cpp's load log ---------------------------------------------

_LAYER = re.compile(r"layer\s+(\d+) assigned to device ([^\s,]+)")
_BUFFER = re.compile(r"(\S+)\s+(model|KV|compute) buffer size =\s*([\d.]+) MiB")
_KIND = {"model": "model_bytes", "KV": "kv_bytes", "compute": "compute_bytes"}


def placement_from_log(lines: Sequence[str], n_layers: int,
                       endpoints: dict[str, str] | None = None) -> tuple[PlacedDevice, ...]:
    """Per device: the layers llama.cpp assigned to it and the buffers it allocated there, read
    from the load's log lines (``load_tensors: layer 3 assigned to device RPC0``,
    ``RPC0[host:port] model buffer size = 33.82 MiB``, ``CPU_Mapped ...``).

    Args:
        n_layers: the model's repeating layers (the layer after them is the output layer).
        endpoints: ggml device name -> worker endpoint (:func:`device_endpoints`).
    """
    endpoints = device_endpoints() if endpoints is None else endpoints
    by_endpoint: dict[str, list[str]] = {}
    for name, ep in endpoints.items():
        by_endpoint.setdefault(ep, []).append(name)
    order: list[str] = []
    values: dict[str, dict[str, Any]] = {}

    def entry(device: str) -> dict[str, Any]:
        if device not in values:
            order.append(device)
            values[device] = {"device": device, "worker": endpoints.get(device, ""), "layers": 0, "output": False,
                              "model_bytes": 0, "kv_bytes": 0, "compute_bytes": 0}
        return values[device]

    for line in lines:
        layer = _LAYER.search(line)
        if layer is not None:
            index, device = int(layer.group(1)), layer.group(2)
            if index < n_layers:
                entry(device)["layers"] += 1
            else:
                entry(device)["output"] = True
            continue
        buffer = _BUFFER.search(line)
        if buffer is None:
            continue
        name, kind, mib = buffer.group(1), buffer.group(2), float(buffer.group(3))
        worker = re.fullmatch(r"RPC(\d+)\[(.+)\]", name)
        if worker is not None:  # "RPC<index on that worker>[endpoint]"
            names = by_endpoint.get(worker.group(2), [])
            index = int(worker.group(1))
            device = names[index] if index < len(names) else name
        else:
            base = name.split("_")[0]
            device = "CPU" if name.endswith("_Host") or base == "CPU" else base
        entry(device)[_KIND[kind]] += int(mib * 1024 * 1024)
    return tuple(PlacedDevice(**values[d]) for d in order)


def placement_notice(devices: Sequence[PlacedDevice]) -> str:
    """Where the layers went, in words: "Layers: 0 on this computer, 16 on the worker at A, 14 on ..."."""
    local = sum(d.layers for d in devices if not d.worker)
    parts = [f"{local} on this computer"] + [f"{d.layers} on the worker at {d.worker}" for d in devices if d.worker]
    return "Layers: " + ", ".join(parts) + "."
