using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Conduit.Common.Routing;
using Conduit.Edge;
using Microsoft.Extensions.DependencyInjection;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>All-in-one with [global.metrics] on, on a port the system gives; the test reads it from the host.</summary>
public sealed class MetricsFixture : AllInOneFixture
{
    protected override string ExtraConfig => base.ExtraConfig + "\nmetrics = { enabled = true, port = 0 }";
    public string MetricsUrl => Services.GetRequiredService<MetricsEndpoint.Listener>().Url!;
}

/// <summary>Split with [global.metrics] on, port 0 in the shared config: each part opens its own metrics listener and
/// says where in its startup summary.</summary>
public sealed class MetricsSplitFixture : SplitFixture
{
    protected override string ExtraConfig => base.ExtraConfig + "\nmetrics = { enabled = true, port = 0 }";

    public string MetricsUrl(string role)
    {
        var line = Log(role).Split('\n').Single(l => l.StartsWith(StartupReport.MetricsPrefix, StringComparison.Ordinal));
        return line[StartupReport.MetricsPrefix.Length..].Split(' ')[0];
    }
}

/// <summary>What an operator scraping the server sees: its requests by route, their latency, the calls between
/// services, waiting long-polls; and that neither /metrics is on the public port nor the Matrix API on the metrics one.</summary>
public abstract class MetricsTests(ServerFixture server)
{
    /// <summary>The metrics URL of the part with <paramref name="role"/> ("edge", "sync"; all-in-one has one process).</summary>
    protected abstract string MetricsUrl(string role);
    /// <summary>The role label of the part: "all" all-in-one, else the part's role.</summary>
    protected abstract string RoleLabel(string role);

    protected async Task<string> Scrape(string role)
    {
        using var resp = await server.Http.GetAsync(MetricsUrl(role) + "/metrics");
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.StartsWith("text/plain", resp.Content.Headers.ContentType?.ToString());
        return await resp.Content.ReadAsStringAsync();
    }

    /// <summary>The value of the series with exactly these labels (role first, then in the order given), or null.</summary>
    protected static double? Value(string scrape, string name, string labels)
    {
        var m = Regex.Match(scrape, "^" + Regex.Escape(name + "{" + labels + "}") + " (\\S+)$", RegexOptions.Multiline);
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : null;
    }

    [Fact]
    public async Task Requests_are_counted_by_route_method_and_status_with_latency_buckets_per_route()
    {
        var alice = await Register(server);
        var room = await alice.CreateRoom();
        await alice.SendText(room, "measured");
        await alice.Sync();
        var role = RoleLabel("edge");
        var text = await Scrape("edge");
        foreach (var (route, method) in new[] { (RouteTable.Register, "POST"), (RouteTable.CreateRoom, "POST"), (RouteTable.Send, "PUT"), (RouteTable.Sync, "GET") })
        {
            var labels = $"role=\"{role}\",route=\"{route.Label}\",method=\"{method}\"";
            Assert.True(Value(text, "conduit_http_requests_total", labels + ",status=\"200\"") >= 1, $"no 200 counted for {method} {route.Label}:\n{text}");
            var count = Value(text, "conduit_http_request_duration_seconds_count", labels);
            Assert.True(count >= 1, $"no latency for {method} {route.Label}");
            Assert.Equal(count, Value(text, "conduit_http_request_duration_seconds_bucket", labels + ",le=\"+Inf\""));
            Assert.NotNull(Value(text, "conduit_http_request_duration_seconds_bucket", labels + ",le=\"0.005\""));
            Assert.True(Value(text, "conduit_http_request_duration_seconds_sum", labels) > 0);
        }
        // Registration's first step is the user-interactive auth challenge: a 401 of the same route.
        Assert.True(Value(text, "conduit_http_requests_total", $"role=\"{role}\",route=\"{RouteTable.Register.Label}\",method=\"POST\",status=\"401\"") >= 1);
        // Raw paths never become labels.
        Assert.DoesNotContain(room, text);
        Assert.DoesNotContain("/_matrix/client/v3/", text);
        Assert.Contains("# TYPE conduit_http_request_duration_seconds histogram", text);
        Assert.True(Value(text, "process_resident_memory_bytes", $"role=\"{role}\"") > 0);
    }

    [Fact]
    public async Task Calls_between_services_are_counted_by_method_and_status()
    {
        var alice = await Register(server);
        await alice.Sync();
        var text = await Scrape("sync");
        Assert.True(Value(text, "conduit_grpc_client_calls_total", $"role=\"{RoleLabel("sync")}\",method=\"/conduit.rooms.Rooms/SyncRooms\",status=\"OK\"") >= 1, text);
        Assert.True(Value(text, "conduit_grpc_client_calls_total", $"role=\"{RoleLabel("sync")}\",method=\"/conduit.keys.Keys/SyncKeys\",status=\"OK\"") >= 1, text);
    }

    [Fact]
    public async Task A_waiting_long_poll_shows_in_the_sync_gauge()
    {
        var alice = await Register(server);
        var since = (await alice.Sync())["next_batch"]!.GetValue<string>();
        var poll = alice.Sync(since, timeoutMs: 8000);
        double? waiting = null;
        for (var i = 0; i < 200 && !(waiting >= 1); i++)
        {
            // A poll may end early (her own presence going online is news): the next one waits again.
            if (poll.IsCompleted) poll = alice.Sync((await poll)["next_batch"]!.GetValue<string>(), timeoutMs: 8000);
            await Task.Delay(100);
            waiting = Value(await Scrape("sync"), "conduit_sync_waiting", $"role=\"{RoleLabel("sync")}\"");
        }
        Assert.True(waiting >= 1, $"conduit_sync_waiting was {waiting}");
        // News ends the wait.
        await alice.CreateRoom();
        await poll;
    }

    [Fact]
    public async Task Metrics_are_not_served_on_the_public_port_nor_the_matrix_api_on_the_metrics_port()
    {
        using (var resp = await server.Http.GetAsync(server.BaseUrl + "/metrics"))
            Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        using (var resp = await server.Http.GetAsync(MetricsUrl("edge") + "/_matrix/client/versions"))
            Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        Assert.NotEqual(new Uri(server.BaseUrl).Port, new Uri(MetricsUrl("edge")).Port);
    }

    [Fact]
    public async Task Health_is_OK_on_the_public_port()
    {
        using var resp = await server.Http.GetAsync(server.BaseUrl + "/health");
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("OK", await resp.Content.ReadAsStringAsync());
    }
}

public sealed class AllInOneMetricsTests(MetricsFixture f) : MetricsTests(f), IClassFixture<MetricsFixture>
{
    protected override string MetricsUrl(string role) => f.MetricsUrl;
    protected override string RoleLabel(string role) => "all";

    [Fact]
    public async Task The_database_memory_is_reported()
    {
        var text = await Scrape("all");
        Assert.True(Value(text, "conduit_storage_memory_bytes", "role=\"all\",kind=\"block_cache_capacity\"") > 0, text);
        Assert.NotNull(Value(text, "conduit_storage_memory_bytes", "role=\"all\",kind=\"memtables\""));
        Assert.NotNull(Value(text, "conduit_federation_destinations", "role=\"all\",state=\"backoff\""));
    }
}

public sealed class SplitMetricsTests(MetricsSplitFixture f) : MetricsTests(f), IClassFixture<MetricsSplitFixture>
{
    protected override string MetricsUrl(string role) => f.MetricsUrl(role);
    protected override string RoleLabel(string role) => role;

    [Fact]
    public async Task Every_part_serves_its_own_metrics_with_its_role()
    {
        var ports = new HashSet<int>();
        foreach (var role in new[] { "edge", "keys", "rooms", "sync", "federation", "media" })
        {
            var text = await Scrape(role);
            Assert.True(Value(text, "process_resident_memory_bytes", $"role=\"{role}\"") > 0, $"{role}:\n{text}");
            Assert.True(ports.Add(new Uri(MetricsUrl(role)).Port));
        }
        // The edge checks access tokens with the keys service.
        var alice = await Register(f);
        await alice.Get(C + "/account/whoami");
        Assert.Matches("conduit_grpc_client_calls_total\\{role=\"edge\",method=\"/conduit\\.keys\\.Keys/[A-Za-z]+\",status=\"OK\"\\} [1-9]", await Scrape("edge"));
        Assert.NotNull(Value(await Scrape("federation"), "conduit_federation_queue_depth", "role=\"federation\",state=\"backoff\""));
    }

    [Fact]
    public async Task Health_is_open_on_the_internal_ports()
    {
        using var http = new HttpClient();
        using var req = new HttpRequestMessage(HttpMethod.Get, f.Addresses["keys"] + "/health") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var resp = await http.SendAsync(req);
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("OK", await resp.Content.ReadAsStringAsync());
    }
}

/// <summary>The real executable with log_format = "json" and metrics on port 0, found through its startup summary.</summary>
public sealed class JsonLogTests
{
    [Fact]
    public async Task Json_log_format_writes_one_json_object_per_line_and_the_summary_names_the_metrics_url()
    {
        var dir = Directory.CreateTempSubdirectory("conduit-json-").FullName;
        try
        {
            var config = Path.Combine(dir, "conduit.toml");
            File.WriteAllText(config, $"""
                [global]
                server_name = "json.test"
                database_path = "{Path.Combine(dir, "db")}"
                port = 0
                log = "info"
                log_format = "json"
                metrics = {"{"} enabled = true, port = 0 {"}"}
                """);
            await using var p = ConduitProcess.Start(new Dictionary<string, string> { ["CONDUIT_CONFIG"] = config });
            var url = await p.ListeningAsync();
            using var http = new HttpClient();
            Assert.Equal("OK", await http.GetStringAsync(url + "/health"));
            var metricsLine = p.Stdout.Single(l => l.StartsWith(StartupReport.MetricsPrefix, StringComparison.Ordinal));
            var metrics = metricsLine[StartupReport.MetricsPrefix.Length..].Split(' ')[0];
            Assert.Matches(@"^http://127\.0\.0\.1:[1-9][0-9]*$", metrics);
            Assert.NotEqual(url, metrics);
            Assert.Contains("conduit_http_requests_total{role=\"all\",route=\"/health\",method=\"GET\",status=\"200\"} 1", await http.GetStringAsync(metrics + "/metrics"));
            // Hosting logs "Application started" at info: as JSON, like every log line; the summary stays plain text.
            var logs = p.Stdout.Where(l => !l.StartsWith("conduit: ", StringComparison.Ordinal)).ToList();
            Assert.NotEmpty(logs);
            foreach (var line in logs)
            {
                using var doc = JsonDocument.Parse(line);
                Assert.True(doc.RootElement.TryGetProperty("LogLevel", out _), line);
                Assert.True(doc.RootElement.TryGetProperty("Category", out _), line);
                Assert.True(doc.RootElement.TryGetProperty("Timestamp", out _), line);
            }
            Assert.Contains(logs, l => l.Contains("\"Category\":\"Microsoft.Hosting.Lifetime\"", StringComparison.Ordinal));
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }
}
