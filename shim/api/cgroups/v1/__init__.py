"""io.containerd.cgroups.v1 (metrics.proto): the cgroup v1 Metrics in StatsResponse.stats."""
