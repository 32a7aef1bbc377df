#!/usr/bin/env bash
# Start RabbitMQ and PostgreSQL where they are installed but not running; say what is missing.
set -u
status=0

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    port_open "$port" && { echo "$name: up on 127.0.0.1:$port"; return 0; }
    sleep 1
  done
  echo "$name: did not come up on 127.0.0.1:$port within 60 s" >&2
  return 1
}

if port_open 5672; then
  echo "RabbitMQ: up on 127.0.0.1:5672"
elif command -v rabbitmq-server >/dev/null; then
  echo "RabbitMQ: starting (rabbitmq-server -detached)"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port 5672 RabbitMQ || status=1
  command -v rabbitmqctl >/dev/null && rabbitmqctl await_startup >/dev/null 2>&1 || true
else
  echo "RabbitMQ: not installed and not reachable on 127.0.0.1:5672." >&2
  echo "  Install it (Debian: apt-get install rabbitmq-server) or point RALLY_AMQP_URL at a broker." >&2
  status=1
fi

if port_open 5432; then
  echo "PostgreSQL: up on 127.0.0.1:5432"
elif command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "PostgreSQL: starting (pg_ctlcluster ... main start)"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_port 5432 PostgreSQL || status=1
else
  echo "PostgreSQL: not installed and not reachable on 127.0.0.1:5432 (optional: the PostgreSQL" >&2
  echo "  store tests are skipped without it; set RALLY_TEST_PG_URL to use another server)." >&2
fi
exit $status
