#!/usr/bin/env bash
# A private RabbitMQ node for tests and benchmarks, bound to 127.0.0.1 only, with its own
# epmd, data, logs and Erlang cookie under DIR; `stop` leaves no process or file behind.
#
#   scripts/rabbitmq-instance.sh start DIR PORT   # AMQP on 127.0.0.1:PORT; waits until ready
#   scripts/rabbitmq-instance.sh stop DIR         # stops the node and its epmd, removes DIR
#   scripts/rabbitmq-instance.sh restart DIR      # stop the node, keep its data, start again
#   scripts/rabbitmq-instance.sh queues DIR       # the node's queue names, one per line
#
# The node's epmd listens on PORT+1 and its distribution port is PORT+2 (all on loopback), so
# callers running several nodes space their PORTs at least 3 apart.
set -euo pipefail
# The scripts themselves, not the Debian wrappers that switch to the rabbitmq user.
bin=/usr/lib/rabbitmq/bin
cmd=${1:?usage: rabbitmq-instance.sh start|stop|restart|queues DIR [PORT]}
dir=${2:?missing DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ "$cmd" = start ]; then
    port=${3:?missing PORT}
    echo "$port" > "$dir/port"
fi
port=$(cat "$dir/port" 2>/dev/null || echo "")
[ -n "$port" ] || { echo "rabbitmq-instance: no node in $dir" >&2; exit 1; }

setenv() {
    export HOME="$dir/home"
    mkdir -p "$HOME" "$dir/mnesia" "$dir/log"
    export RABBITMQ_NODENAME="warren$port@localhost"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$port"
    export RABBITMQ_DIST_PORT=$((port + 2))
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export ERL_EPMD_PORT=$((port + 1))
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_PID_FILE="$dir/node.pid"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    [ -e "$dir/enabled_plugins" ] || echo '[].' > "$dir/enabled_plugins"
    [ -e "$dir/rabbitmq.conf" ] || printf 'loopback_users = none\nlisteners.tcp.1 = 127.0.0.1:%s\n' "$port" > "$dir/rabbitmq.conf"
    [ -e "$dir/advanced.config" ] || echo '[].' > "$dir/advanced.config"
    [ -e "$dir/rabbitmq-env.conf" ] || : > "$dir/rabbitmq-env.conf"
    if [ ! -e "$HOME/.erlang.cookie" ]; then
        head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$HOME/.erlang.cookie"
        chmod 400 "$HOME/.erlang.cookie"
    fi
}

start() {
    setenv
    epmd -address 127.0.0.1 -port "$ERL_EPMD_PORT" -daemon
    "$bin/rabbitmq-server" > "$dir/log/stdout" 2>&1 &
    "$bin/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" wait --pid $! --timeout 60 >/dev/null 2>&1 \
        || "$bin/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" await_startup --timeout 60 >/dev/null
}

stop_node() {
    setenv
    "$bin/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || true
    # Whatever of this node is still alive (matched by its private home directory).
    for pid in $(pgrep -f -- "-home $dir/home" || true); do kill -9 "$pid" 2>/dev/null || true; done
}

case "$cmd" in
    start) start ;;
    restart) stop_node; start ;;
    queues) setenv; "$bin/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" list_queues name --no-table-headers ;;
    stop)
        stop_node
        setenv
        epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1 || true
        for pid in $(pgrep -f -- "epmd .*-port $ERL_EPMD_PORT" || true); do kill "$pid" 2>/dev/null || true; done
        rm -rf "$dir"
        ;;
    *) echo "usage: rabbitmq-instance.sh start|stop|restart|queues DIR [PORT]" >&2; exit 2 ;;
esac
