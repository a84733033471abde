"""hearthd's TCP listener with TLS and client certificates.

Makes a throwaway CA, a server certificate for 127.0.0.1 and a client
certificate with openssl, starts hearthd with --listen=unix:...,tcp:... and
--tls_cert/--tls_key/--tls_client_ca, and checks that a client with a
certificate signed by the CA is served, and that one without a certificate,
a plaintext one and one with a certificate from another CA are refused.
Also checks that a tcp listener without TLS is refused at start-up unless
--insecure_tcp says so. Needs no KVM (no VM is created).

hearthd listens on tcp:127.0.0.1:0 and the test reads the port it bound from
its "hearthd: ready on ..." line: a port picked beforehand by binding and
closing a socket may be taken by another process before hearthd binds it.
"""
from __future__ import annotations

import os
import re
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
        self.log = os.path.join(self.dir, "hearthd.log")

    def tearDown(self) -> None:
        subprocess.run(["rm", "-rf", self.dir], check=False)

    def start(self, *flags: str) -> subprocess.Popen[bytes]:
        d = self.dir
        # hearthd checks at start-up that --vmm is executable: name the one in
        # the runfiles rather than let it find whatever hearth-vmm happens to
        # have been built next to it in bazel-out.
        argv = [runfile("agent/hearthd"), f"--state_dir={d}/state", f"--run_dir={d}/run",
                f"--image_roots={d}/images", f"--chroot_base_dir={d}/jail",
                f"--vmm={runfile('vmm/hearth-vmm')}", "--no_jail", *flags]
        with open(self.log, "wb") as log:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)

    def read_log(self) -> str:
        with open(self.log, "rb") as log:
            return log.read().decode(errors="replace")

    def wait_ready(self, agent: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
        """Waits for hearthd's ready line; returns the 127.0.0.1:PORT it bound."""
        deadline = time.monotonic() + timeout
        while True:
            ready = re.search(r"^hearthd: ready on (.*)$", self.read_log(), re.MULTILINE)
            if ready:
                tcp = re.search(r"(?:^|,)tcp:(127\.0\.0\.1:(\d+))(?:,|$)", ready.group(1))
                self.assertIsNotNone(tcp, f"no tcp: address in {ready.group(0)!r}")
                self.assertNotEqual(tcp.group(2), "0", ready.group(0))
                return tcp.group(1)
            self.assertIsNone(agent.poll(), f"hearthd exited:\n{self.read_log()}")
            self.assertLess(time.monotonic(), deadline,
                            f"hearthd not ready within {timeout} s:\n{self.read_log()}")
            time.sleep(0.05)

    def call(self, channel: grpc.Channel, timeout: float = 30) -> grpc.StatusCode:
        stub = hearth_pb2_grpc.HearthStub(channel)
        try:
            stub.GetHostInfo(hearth_pb2.GetHostInfoRequest(), timeout=timeout)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()
        finally:
            channel.close()

    def test_client_certificates_are_required(self) -> None:
        agent = self.start(f"--listen=unix:{self.dir}/h.sock,tcp:127.0.0.1:0",
                           f"--tls_cert={self.server[1]}", f"--tls_key={self.server[0]}",
                           f"--tls_client_ca={self.ca[1]}")
        try:
            # Listening (and serving) once the ready line is out.
            target = self.wait_ready(agent)
            good = grpc.ssl_channel_credentials(read(self.ca[1]), read(self.client[0]),
                                                read(self.client[1]))
            self.assertEqual(self.call(grpc.secure_channel(target, good)), grpc.StatusCode.OK,
                             self.read_log())
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
            self.assertEqual(agent.wait(timeout=30), 0, self.read_log())

    def test_plain_tcp_needs_to_be_asked_for(self) -> None:
        # Refused before anything is bound.
        agent = self.start("--listen=tcp:127.0.0.1:0")
        self.assertEqual(agent.wait(timeout=60), 2, self.read_log())
        self.assertIn("--tls_cert", self.read_log())


if __name__ == "__main__":
    sys.exit(unittest.main())
