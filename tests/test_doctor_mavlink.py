"""`edge-geoloc doctor --mavlink`: the autopilot's heartbeat, its system id and which streams arrive at which
rates, against a pymavlink peer playing the autopilot on loopback; each failure provoked (a UDP port another
program holds, no heartbeat, a heartbeat from another system id, no attitude stream)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytest.importorskip("pymavlink")

from edge_geoloc.cli import main
from edge_geoloc.localize.doctor import Doctor
from edge_geoloc.localize.mavlink import pymavlink


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Autopilot:
    """A pymavlink peer sending HEARTBEAT (1 Hz) and, when asked, ATTITUDE (50 Hz), GLOBAL_POSITION_INT (10 Hz)
    and GPS_RAW_INT (5 Hz) to ``port`` until stopped."""

    def __init__(self, port: int, sysid: int = 1, streams: bool = True) -> None:
        self.conn = pymavlink().mavlink_connection(f"udpout:127.0.0.1:{port}", source_system=sysid, source_component=1)
        self.streams, self._stop = streams, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        mav, tick = self.conn.mav, 0
        while not self._stop.is_set():
            boot_ms = tick * 20
            if tick % 50 == 0:
                mav.send(mav.heartbeat_encode(2, 3, 0x81, 0, 4))  # a quadrotor's ArduPilot
            if self.streams:
                mav.send(mav.attitude_encode(boot_ms, 0.01, -0.02, 1.5, 0.0, 0.0, 0.0))
                if tick % 5 == 0:
                    mav.send(mav.global_position_int_encode(boot_ms, 473700000, 85400000, 520000, 120000, 0, 0, 0, 0))
                if tick % 10 == 0:
                    mav.send(
                        mav.gps_raw_int_encode(boot_ms * 1000, 3, 473700000, 85400000, 520000, 90, 65535, 0, 0, 12)
                    )
            tick += 1
            time.sleep(0.02)

    def __enter__(self) -> Autopilot:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.conn.close()


def mavlink_check(**kw) -> tuple[str, str]:
    (result,) = [r for r in Doctor(mavlink_listen_s=1.0, **kw).run() if r.name == "mavlink"]
    return result.status, result.detail


def test_an_autopilot_with_its_streams_passes_naming_them_and_their_rates():
    port = free_udp_port()
    with Autopilot(port):
        status, detail = mavlink_check(mavlink=f"udp:127.0.0.1:{port}", mavlink_wait_s=5.0)
    assert status == "ok", detail
    assert "ArduPilot (system 1), MAVLink 2" in detail
    rates = {k: float(v.split()[0]) for k, v in (part.split(" ", 1) for part in detail.split("; ")[1].split(", "))}
    assert set(rates) >= {"ATTITUDE", "GLOBAL_POSITION_INT", "GPS_RAW_INT"}
    assert rates["ATTITUDE"] > rates["GLOBAL_POSITION_INT"] > rates["GPS_RAW_INT"] > 0  # 50 > 10 > 5 Hz sent


def test_heartbeats_without_attitude_fail_and_name_where_streams_are_set():
    port = free_udp_port()
    with Autopilot(port, streams=False):
        status, detail = mavlink_check(mavlink=f"udp:127.0.0.1:{port}", mavlink_wait_s=5.0)
    assert status == "FAIL" and "no ATTITUDE stream" in detail and "SRn_EXTRA1" in detail


def test_no_heartbeat_fails_naming_the_connection():
    port = free_udp_port()
    status, detail = mavlink_check(mavlink=f"udp:127.0.0.1:{port}", mavlink_wait_s=0.5)
    assert status == "FAIL" and f"udp:127.0.0.1:{port}: no heartbeat from an autopilot within 0.5 s" in detail


def test_a_heartbeat_from_another_system_id_fails_saying_which_was_heard():
    port = free_udp_port()
    with Autopilot(port, sysid=2):
        status, detail = mavlink_check(mavlink=f"udp:127.0.0.1:{port}", mavlink_sysid=1, mavlink_wait_s=1.5)
    assert status == "FAIL" and "no heartbeat from system 1" in detail and "heard only system(s) [2]" in detail


def test_a_udp_port_in_use_fails_and_the_command_exits_non_zero(capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        status, detail = mavlink_check(mavlink=f"udp:127.0.0.1:{port}")
        assert status == "FAIL" and f"UDP port {port} on 127.0.0.1 is already in use" in detail
        assert main(["doctor", "--mavlink", f"udp:127.0.0.1:{port}"]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("FAIL  mavlink") for line in out.splitlines()) and "failed: mavlink" in out


def test_without_a_connection_the_check_is_skipped():
    assert mavlink_check() == ("skip", "no --mavlink")
