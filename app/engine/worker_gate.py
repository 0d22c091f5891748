"""The front of ``paddock worker``: only allowed clients reach llama.cpp's RPC server.

llama.cpp's RPC protocol has no authentication, and its server accepts whoever connects.
So ggml listens on a private loopback port (:class:`app.engine.rpc.WorkerProcess`) and this
gate listens on the address the user chose: it checks each client's address against the
allow-list *before reading a byte from it*, closes refused connections at once, answers
Paddock's status request itself (the device and its free memory, even while a client is being
served), and forwards everything else both ways unchanged.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Sequence

from app.engine import rpc
from app.errors import WorkerError

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_CHUNK = 1 << 20
FIRST_BYTE_TIMEOUT_S = 30.0


def allowed_networks(host: str, allow: Sequence[str]) -> tuple[Network, ...]:
    """The client networks a worker listening on ``host`` accepts.

    Without ``allow`` only loopback clients, and only on a loopback ``host``: listening on any
    other address without an allow-list would hand this machine to anyone who can reach it.
    Each ``allow`` entry is an address, a network (``192.168.1.0/24``) or a host name
    (resolved now).

    Raises:
        WorkerError: a non-loopback ``host`` without ``allow``, or an entry that is none of those.
    """
    if not allow:
        if not rpc.is_loopback(host):
            raise WorkerError(
                f"a worker on {host} would let anyone who reaches this machine use it (llama.cpp's RPC "
                "protocol has no password): name the computers allowed to use it with --allow ADDR (repeatable), "
                "or keep it on 127.0.0.1 and reach it through an SSH tunnel"
            )
        return LOOPBACK
    networks: list[Network] = []
    for entry in allow:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            continue
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(entry.strip(), None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise WorkerError(f"--allow {entry}: not an address, a network or a known host name ({exc})") from exc
        networks.extend(ipaddress.ip_network(str(info[4][0])) for info in infos)
    return tuple(networks)


def peer_allowed(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


class WorkerGate:
    """Listens at ``host:port`` and forwards allowed clients to the worker's private endpoint.

    Args:
        worker: the running worker (its private loopback endpoint, its device for status).
        allow: client addresses, networks or host names (see :func:`allowed_networks`).

    Raises:
        WorkerError: (constructor) not allowed to listen there without ``allow``.
    """

    def __init__(self, worker: rpc.WorkerProcess, host: str = "127.0.0.1", port: int = rpc.DEFAULT_PORT,
                 allow: Sequence[str] = ()) -> None:
        self.networks = allowed_networks(host, allow)
        self.worker = worker
        self.host = host
        self.port = port
        self.refused = 0  # connections closed because the client is not allowed
        # bytes forwarded each way (the benchmark's bytes per token)
        self.bytes_to_worker = 0
        self.bytes_from_worker = 0
        self._active = 0  # clients being forwarded now
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()

    def bind(self) -> None:
        """Start listening (before any client can connect).

        Raises:
            WorkerError: the address is in use or not this machine's.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise WorkerError(f"cannot listen at {rpc.endpoint(self.host, self.port)}: {exc.strerror or exc}") from exc
        self.port = sock.getsockname()[1]
        self._sock = sock

    @property
    def endpoint(self) -> str:
        return rpc.endpoint(self.host, self.port)

    @property
    def busy(self) -> bool:
        return self._active > 0

    def serve_forever(self) -> None:
        """Accept clients until :meth:`stop` (or the worker process ends)."""
        if self._sock is None:
            self.bind()
        sock = self._sock
        assert sock is not None
        sock.settimeout(0.5)
        while not self._stopping.is_set():
            if not self.worker.is_alive():
                raise WorkerError("the worker process ended")
            try:
                client, addr = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            if not peer_allowed(str(addr[0]), self.networks):
                # closed before a byte is read: ggml never sees this client
                self.refused += 1
                log.warning("refused a connection from %s: not in the allowed clients", addr[0])
                with contextlib.suppress(OSError):
                    client.close()
                continue
            threading.Thread(target=self._handle, args=(client, addr), name="worker-gate", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()

    def _count_to(self, n: int) -> None:
        self.bytes_to_worker += n  # one thread per direction: no lock needed for a counter each

    def _count_back(self, n: int) -> None:
        self.bytes_from_worker += n

    def _handle(self, client: socket.socket, addr: tuple[str, int]) -> None:
        try:
            client.settimeout(FIRST_BYTE_TIMEOUT_S)
            first = client.recv(1)
            if not first:
                return
            if first == rpc.STATUS_REQUEST[:1]:
                self._status(client, first)
                return
            client.settimeout(None)
            self._forward(client, first, addr)
        except OSError as exc:
            log.info("client %s: %s", addr[0], exc)
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _status(self, client: socket.socket, first: bytes) -> None:
        data = first
        while not data.endswith(b"\n") and len(data) < len(rpc.STATUS_REQUEST):
            part = client.recv(len(rpc.STATUS_REQUEST) - len(data))
            if not part:
                return
            data += part
        if data != rpc.STATUS_REQUEST:
            return
        try:
            info = self.worker.memory()
        except WorkerError:
            return
        client.sendall(rpc.status_line(info, self.busy))

    def _forward(self, client: socket.socket, first: bytes, addr: tuple[str, int]) -> None:
        host, port = rpc.parse_endpoint(self.worker.endpoint)
        upstream = socket.create_connection((host, port), timeout=10)
        upstream.settimeout(None)
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._active += 1
        log.info("client %s connected", addr[0])
        try:
            upstream.sendall(first)
            self.bytes_to_worker += len(first)
            back = threading.Thread(target=_pipe, args=(upstream, client, self._count_back), name="worker-gate-back",
                                    daemon=True)
            back.start()
            _pipe(client, upstream, self._count_to)
            back.join()
        finally:
            with self._lock:
                self._active -= 1
            upstream.close()
            log.info("client %s disconnected", addr[0])


def _pipe(src: socket.socket, dst: socket.socket, count: Callable[[int], None]) -> None:
    """Copy ``src`` to ``dst`` until either side ends; then end both directions."""
    try:
        while True:
            data = src.recv(_CHUNK)
            if not data:
                break
            dst.sendall(data)
            count(len(data))
    except OSError:
        pass
    for s in (dst, src):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
