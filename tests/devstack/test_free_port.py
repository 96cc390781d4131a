"""Services a test starts each get a port of their own."""

from __future__ import annotations

from devstack._proc import free_port


def test_a_port_is_never_handed_out_twice_in_a_process() -> None:
    """The kernel gives a just-released port again (bind to port 0 repeats within a few hundred
    calls), and two services of one test were once given the same one."""
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
