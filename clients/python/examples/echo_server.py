"""An echo server with the blocking client: answers every request (a message with a reply
handle: `warren-msg call`, C's warren_call, Client.call) with its own body, until a message
whose body is b"stop" arrives.

    warren run --name echo --rootfs PYTHON_ROOT -- /usr/bin/python3 /opt/echo_server.py
"""

import warren

with warren.Client() as k:
    while True:
        request = k.recv()
        if request.reply is not None:
            k.reply(request, request.body)
        if request.body == b"stop":
            break
