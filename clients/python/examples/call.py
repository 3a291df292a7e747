"""A client: call TARGET with BODY and print the answer's body.

    warren run --rootfs PYTHON_ROOT --may-send echo -- /usr/bin/python3 /opt/call.py echo hello
"""

import sys
import time

import warren

target, body = sys.argv[1], sys.argv[2]
with warren.Client() as k:
    deadline = time.monotonic() + 20
    while True:  # the server may still be starting
        try:
            handle = k.lookup(target)
            break
        except warren.NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    answer = k.call(handle, body, timeout=10)
    print(answer.body.decode())
    if answer.body != body.encode() or answer.sender != target:
        sys.exit(f"call.py: {answer!r} does not answer {body!r} from {target}")
