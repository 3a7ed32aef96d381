"""Figures of a load test: percentiles, and CPU and memory read from /proc."""

import os

__all__ = ["ProcSampler", "cpu_times", "len_msgs", "percentile"]


def percentile(values, q):
    """The q-th percentile (0-100) of ``values`` by nearest rank; None if empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class ProcSampler:
    """CPU seconds (user+sys) and VmRSS of a process, read from /proc."""

    def __init__(self, pid):
        self.pid = pid
        self.clk = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self):
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # after "pid (comm)": state is fields[0]; utime, stime are stat fields 14, 15
        return (int(fields[11]) + int(fields[12])) / self.clk

    def rss_mb(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None


def cpu_times():
    """{cpu name: (busy, total)} jiffies from /proc/stat, or {} where there is none."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3:4].isdigit():
                    name, *v = line.split()
                    v = [int(x) for x in v[:8]]
                    out[name] = (sum(v) - v[3] - v[4], sum(v))
    except OSError:
        pass
    return out


def len_msgs(bot):
    return bot.msgs_in


def _r(v):
    return None if v is None else round(v, 2)

