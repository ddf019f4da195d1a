"""A small JSON-RPC client for lode's daemon socket (Content-Length framing),
and a fixture helper that runs `lode serve` on a private socket."""
import json
import os
import socket
import subprocess
import tempfile
import time

from lodetest import LODE

# Timeouts here only detect hangs; the sanitizer build runs several times
# slower, so they stretch there.
SLOW = 5 if os.environ.get("LODE_SAN") else 1


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""
        self.next_id = 0
        self.notes = []

    def send_raw(self, data):
        self.s.sendall(data)

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.s.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def request(self, method, params, rid=None):
        if rid is None:
            self.next_id += 1
            rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return rid

    def read(self, timeout=60):
        """Next message (notifications included), or None on EOF."""
        self.s.settimeout(timeout * SLOW)
        while True:
            if b"\r\n\r\n" in self.buf:
                h, rest = self.buf.split(b"\r\n\r\n", 1)
                n = int([l for l in h.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
                if len(rest) >= n:
                    self.buf = rest[n:]
                    return json.loads(rest[:n])
            d = self.s.recv(65536)
            if not d:
                return None
            self.buf += d

    def response(self, rid, timeout=60):
        """The response to `rid`; notifications seen meanwhile go to self.notes."""
        while True:
            m = self.read(timeout)
            if m is None:
                raise EOFError("connection closed")
            if "method" in m:
                self.notes.append(m)
                continue
            if m.get("id") == rid:
                return m

    def call(self, method, params, timeout=60):
        return self.response(self.request(method, params), timeout)

    def close(self):
        self.s.close()


class Daemon:
    def __init__(self, model, *extra):
        self.dir = tempfile.mkdtemp(prefix="lode-test-")
        os.chmod(self.dir, 0o700)
        self.sock = os.path.join(self.dir, "lode.sock")
        env = dict(os.environ, XDG_STATE_HOME=self.dir)
        self.p = subprocess.Popen([LODE, "serve", "-m", model, "--socket", self.sock, *map(str, extra)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(600):
            if os.path.exists(self.sock):
                break
            if self.p.poll() is not None:
                raise RuntimeError(self.p.stderr.read().decode())
            time.sleep(0.05)
        time.sleep(0.05)

    def client(self):
        return Client(self.sock)

    def stop(self):
        if self.p.poll() is None:
            try:
                Client(self.sock).call("lode/shutdown", {}, timeout=30)
            except Exception:
                self.p.terminate()
        out, err = self.p.communicate(timeout=60)
        return self.p.returncode, err.decode()
