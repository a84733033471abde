"""hearthd's TCP listener with TLS and client certificates.

Makes a throwaway CA, a server certificate for 127.0.0.1 and a client
certificate with openssl, starts hearthd with --listen=unix:...,tcp:... and
--tls_cert/--tls_key/--tls_client_ca, and checks that a client with a
certificate signed by the CA is served, and that one without a certificate,
a plaintext one and one with a certificate from another CA are refused.
Also checks that a tcp listener without TLS is refused at start-up unless
--insecure_tcp says so. Needs no KVM (no VM is created).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

from hearth.v1 import hearth_pb2, hearth_pb2_grpc


def runfile(path: str) -> str:
    root = os.environ.get("TEST_SRCDIR") or os.environ["RUNFILES_DIR"]
    return os.path.join(root, "hearth", path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: str, name: str) -> tuple[str, str]:
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
            "-days", "1", "-subj", f"/CN={name}")
    return key, cert


def make_cert(directory: str, name: str, ca: tuple[str, str], san: str | None) -> tuple[str, str]:
    key, csr = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.csr")
    cert = os.path.join(directory, f"{name}.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", f"/CN={name}")
    extra: list[str] = []
    if san:
        ext = os.path.join(directory, f"{name}.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName={san}\n")
        extra = ["-extfile", ext]
    openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial",
            "-out", cert, "-days", "1", *extra)
    return key, cert


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class TlsTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="hearth-tls-", dir="/tmp")
        os.mkdir(os.path.join(self.dir, "images"))
        self.ca = make_ca(self.dir, "ca")
        self.server = make_cert(self.dir, "server", self.ca, "IP:127.0.0.1")
        self.client = make_cert(self.dir, "client", self.ca, None)
        self.port = free_port()

    def tearDown(self) -> None:
        subprocess.run(["rm", "-rf", self.dir], check=False)

    def start(self, *flags: str) -> subprocess.Popen[bytes]:
        d = self.dir
        argv = [runfile("agent/hearthd"), f"--state_dir={d}/state", f"--run_dir={d}/run",
                f"--image_roots={d}/images", f"--chroot_base_dir={d}/jail", "--no_jail", *flags]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def call(self, channel: grpc.Channel) -> grpc.StatusCode:
        stub = hearth_pb2_grpc.HearthStub(channel)
        try:
            stub.GetHostInfo(hearth_pb2.GetHostInfoRequest(), timeout=5)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()
        finally:
            channel.close()

    def test_client_certificates_are_required(self) -> None:
        agent = self.start(f"--listen=unix:{self.dir}/h.sock,tcp:127.0.0.1:{self.port}",
                           f"--tls_cert={self.server[1]}", f"--tls_key={self.server[0]}",
                           f"--tls_client_ca={self.ca[1]}")
        try:
            target = f"127.0.0.1:{self.port}"
            deadline = time.monotonic() + 30
            good = grpc.ssl_channel_credentials(read(self.ca[1]), read(self.client[0]),
                                                read(self.client[1]))
            while self.call(grpc.secure_channel(target, good)) != grpc.StatusCode.OK:
                self.assertIsNone(agent.poll(), "hearthd exited")
                self.assertLess(time.monotonic(), deadline, "no TLS answer within 30 s")
                time.sleep(0.1)
            no_cert = grpc.ssl_channel_credentials(read(self.ca[1]))
            self.assertNotEqual(self.call(grpc.secure_channel(target, no_cert)), grpc.StatusCode.OK)
            self.assertNotEqual(self.call(grpc.insecure_channel(target)), grpc.StatusCode.OK)
            other_ca = make_ca(self.dir, "other-ca")
            stranger = make_cert(self.dir, "stranger", other_ca, None)
            foreign = grpc.ssl_channel_credentials(read(self.ca[1]), read(stranger[0]),
                                                   read(stranger[1]))
            self.assertNotEqual(self.call(grpc.secure_channel(target, foreign)), grpc.StatusCode.OK)
            # The unix socket keeps working alongside.
            self.assertEqual(self.call(grpc.insecure_channel(f"unix:{self.dir}/h.sock")),
                             grpc.StatusCode.OK)
        finally:
            agent.terminate()
            self.assertEqual(agent.wait(timeout=20), 0)

    def test_plain_tcp_needs_to_be_asked_for(self) -> None:
        agent = self.start(f"--listen=tcp:127.0.0.1:{self.port}")
        _, err = agent.communicate(timeout=20)
        self.assertEqual(agent.returncode, 2)
        self.assertIn(b"--tls_cert", err)


if __name__ == "__main__":
    sys.exit(unittest.main())
