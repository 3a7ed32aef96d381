"""The cluster-mode fixtures themselves (tests/cluster_support.py): Redis starts, answers,
stops and comes back empty on the same port; a node starts in cluster mode and serves the
API; kill() leaves no process; a node without --secret fails with the option's message."""

import json
import os
import subprocess
from urllib.request import urlopen

import pytest

from cluster_support import ClusterNode, NodeError, RedisError, RedisServer, wait_until


def gone(pid):
    """No such process (a zombie counts as gone: it runs nothing and holds no port)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def get_json(url):
    with urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        return json.loads(reply.read())


def test_redis_starts_answers_stops_and_restarts_empty_on_the_same_port(redis_server):
    port, pid = redis_server.port, redis_server.pid
    assert redis_server.url == "redis://127.0.0.1:%d/0" % port
    assert redis_server.cli("PING") == "PONG"
    assert redis_server.cli("SET", "arbiter:room:r1", "node-0") == "OK"
    assert redis_server.cli("GET", "arbiter:room:r1") == "node-0"
    assert redis_server.cli("CONFIG", "GET", "save") == "save"     # and an empty value
    assert redis_server.cli("CONFIG", "GET", "appendonly") == "appendonly\nno"

    redis_server.stop()
    assert gone(pid) and redis_server.pid is None
    with pytest.raises(RedisError, match="Could not connect"):
        redis_server.cli("PING")

    redis_server.start()
    assert redis_server.port == port and redis_server.pid != pid
    assert redis_server.cli("PING") == "PONG"
    assert redis_server.cli("EXISTS", "arbiter:room:r1") == "0"           # empty again

    pid = redis_server.pid
    redis_server.kill()
    assert gone(pid)
    redis_server.start()
    assert redis_server.cli("DBSIZE") == "0"


def test_redis_close_leaves_nothing():
    redis = RedisServer().start()
    pid, folder = redis.pid, redis.directory
    assert os.path.isdir(folder)
    redis.close()
    assert gone(pid) and not os.path.exists(folder)


def test_a_node_starts_in_cluster_mode_and_serves_the_api(cluster, redis_server):
    [node] = cluster(1, registered=False)
    assert node.running and node.node_id == "node-0"
    assert node.ws_url == "ws://127.0.0.1:%d/ws" % node.port
    assert node.http == "http://127.0.0.1:%d" % node.port
    assert get_json(node.http + "/api/rooms") == {"rooms": []}
    assert "--redis" in node.argv and redis_server.url in node.argv
    assert node.argv[node.argv.index("--secret") + 1] == cluster.secret
    assert "ArbiterSite starting on %d" % node.port in node.log()


def test_nodes_share_the_secret_and_get_distinct_ids_and_ports(cluster):
    nodes = cluster(2, registered=False)
    more = cluster.node(registered=False)
    everyone = nodes + [more]
    assert [n.node_id for n in everyone] == ["node-0", "node-1", "node-2"]
    assert len({n.port for n in everyone}) == 3
    assert {n.argv[n.argv.index("--secret") + 1] for n in everyone} == {cluster.secret}
    for n in everyone:
        assert get_json(n.http + "/api/rooms") == {"rooms": []}


def test_kill_leaves_no_process(cluster):
    [node] = cluster(1, registered=False)
    pid = node.pid
    node.kill()
    assert gone(pid) and not node.running and node.returncode == -9


def test_stop_is_a_clean_shutdown(cluster):
    [node] = cluster(1, registered=False)
    pid = node.pid
    node.stop()
    assert gone(pid) and node.returncode == 0
    assert "Main loop terminated" in node.log()


def test_a_killed_node_starts_again_on_its_port(cluster):
    [node] = cluster(1, registered=False)
    node.kill()
    node.start(registered=False)
    assert get_json(node.http + "/api/rooms") == {"rooms": []}


def test_a_node_without_secret_fails_with_the_options_message(redis_server, tmp_path):
    node = ClusterNode(redis_server, secret=None, log_dir=str(tmp_path))
    with pytest.raises(NodeError) as failed:
        node.start(registered=False, timeout=20)
    message = str(failed.value)
    assert "cluster mode (--redis) needs --secret" in message
    assert "ended (exit code 2)" in message and node.node_id in message
    assert not node.running


def test_a_wait_that_times_out_says_what_it_waited_for(redis_server, tmp_path):
    node = ClusterNode(redis_server, secret="s", log_dir=str(tmp_path))
    try:
        node.spawn()
        with pytest.raises(NodeError, match=r"still not ready after 0 s: waiting for listening"):
            node.wait_ready(registered=False, timeout=0)        # Python is not up that fast
        node.wait_ready(registered=False, timeout=20)
        # the registration wait looks for arbiter:node:<node_id>; under a name no node
        # writes, it times out with the node's log, and goes on once the key is there
        node.node_id = "ghost-%d" % node.port
        with pytest.raises(NodeError, match="waiting for its key arbiter:node:ghost-") as failed:
            node.wait_ready(registered=True, timeout=0.2)
        assert "ArbiterSite starting on %d" % node.port in str(failed.value)
        redis_server.cli("SET", "arbiter:node:%s" % node.node_id, "{}")
        node.wait_ready(registered=True, timeout=5)
    finally:
        node.kill()


def test_wait_until_polls_with_a_deadline():
    calls = []
    assert wait_until(lambda: calls.append(1) or len(calls) >= 3, timeout=5) is True
    with pytest.raises(AssertionError, match="not within 0.0 s: the log"):
        wait_until(lambda: False, timeout=0.01, message=lambda: "the log")


def test_no_process_started_here_outlives_the_tests():
    """The parent-death signal: a redis-server whose parent dies is killed with it."""
    script = ("import sys; sys.path[:0] = %r\n"
              "from cluster_support import RedisServer\n"
              "r = RedisServer().start(); print(r.pid, flush=True)\n"
              "import os; os._exit(0)\n" % ([os.path.dirname(__file__)],))
    out = subprocess.run([os.environ.get("PYTHON", __import__("sys").executable), "-c", script],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[0])
    wait_until(lambda: gone(pid), timeout=10, message="redis-server %d outlived its parent" % pid)
