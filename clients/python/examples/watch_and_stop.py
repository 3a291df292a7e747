"""Monitor TARGET, ask it to stop, and wait for its down notice; then a send to it is refused
with warren.Dead. Prints the notice.

    warren run --rootfs PYTHON_ROOT --may-send echo -- /usr/bin/python3 /opt/watch_and_stop.py echo
"""

import sys

import warren

target = sys.argv[1]
with warren.Client() as k:
    with k.lookup(target) as h:
        ref = k.monitor(h)
        k.call(h, b"stop", timeout=10)
        notice = k.recv(timeout=10)
        assert notice.down == ref and notice.sender == target, notice
        try:
            k.send(h, b"anyone there?")
            sys.exit("a send to an ended environment was accepted")
        except warren.Dead:
            pass
    print(f"{target} is down (reference {ref})")
