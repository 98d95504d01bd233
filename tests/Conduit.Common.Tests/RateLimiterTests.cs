using System.Collections;
using System.Net;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Microsoft.AspNetCore.Http;

namespace Conduit.Common.Tests;

/// <summary>A clock the test moves by hand.</summary>
sealed class ManualClock : TimeProvider
{
    long _ticks;
    public override long TimestampFrequency => TimeSpan.TicksPerSecond;
    public override long GetTimestamp() => _ticks;
    public void Advance(TimeSpan t) => _ticks += t.Ticks;
}

public sealed class RateLimiterTests
{
    readonly ManualClock _clock = new();

    RateLimiter Limiter(double perSecond, double burst, int maxKeys = RateLimiter.DefaultMaxKeys) => new(perSecond, burst, maxKeys, _clock);

    [Fact]
    public void A_burst_passes_then_the_next_action_waits_for_one_to_drain()
    {
        var l = Limiter(0.2, 10);
        for (var i = 0; i < 10; i++) Assert.True(l.TryAcquire("@a:x", out _));
        Assert.False(l.TryAcquire("@a:x", out var wait));
        Assert.Equal(5.0, wait.TotalSeconds, 3);
        _clock.Advance(TimeSpan.FromSeconds(4.9));
        Assert.False(l.TryAcquire("@a:x", out wait));
        Assert.Equal(0.1, wait.TotalSeconds, 3);
        _clock.Advance(TimeSpan.FromSeconds(0.1));
        Assert.True(l.TryAcquire("@a:x", out _));
        Assert.False(l.TryAcquire("@a:x", out _));
    }

    [Fact]
    public void Refused_actions_cost_nothing_so_waiting_the_given_time_always_works()
    {
        var l = Limiter(0.17, 3);
        for (var i = 0; i < 3; i++) Assert.True(l.TryAcquire("k", out _));
        for (var i = 0; i < 50; i++) Assert.False(l.TryAcquire("k", out _));
        Assert.False(l.TryAcquire("k", out var wait));
        _clock.Advance(wait);
        Assert.True(l.TryAcquire("k", out _));
    }

    [Fact]
    public void Keys_are_independent()
    {
        var l = Limiter(0.1, 2);
        Assert.True(l.TryAcquire("a", out _));
        Assert.True(l.TryAcquire("a", out _));
        Assert.False(l.TryAcquire("a", out _));
        Assert.True(l.TryAcquire("b", out _));
    }

    [Fact]
    public void A_steady_pace_below_the_rate_is_never_refused()
    {
        var l = Limiter(0.5, 20);
        for (var i = 0; i < 1000; i++)
        {
            Assert.True(l.TryAcquire("@typist:x", out _));
            _clock.Advance(TimeSpan.FromSeconds(2));
        }
    }

    [Fact]
    public void Checking_without_update_counts_nothing_and_record_counts_without_checking()
    {
        var l = Limiter(1, 3);
        for (var i = 0; i < 10; i++) Assert.True(l.TryAcquire("k", out _, update: false));
        l.Record("k");
        l.Record("k");
        Assert.True(l.TryAcquire("k", out _));
        Assert.False(l.TryAcquire("k", out _));
        // Recording past the burst does not push the wait beyond one full bucket.
        for (var i = 0; i < 100; i++) l.Record("k");
        Assert.False(l.TryAcquire("k", out var wait));
        Assert.Equal(1.0, wait.TotalSeconds, 3);
    }

    [Fact]
    public void A_cost_above_the_burst_passes_only_on_a_drained_bucket()
    {
        var l = Limiter(1, 10);
        Assert.True(l.TryAcquire("k", out _, cost: 25));
        Assert.False(l.TryAcquire("k", out var wait, cost: 25));
        Assert.Equal(10.0, wait.TotalSeconds, 3);
    }

    [Fact]
    public void Drained_buckets_are_swept_away()
    {
        var l = Limiter(1, 5);
        for (var i = 0; i < 100; i++) l.TryAcquire($"ip{i}", out _);
        Assert.Equal(100, l.Count);
        _clock.Advance(TimeSpan.FromMinutes(2));
        l.TryAcquire("new", out _);
        Assert.Equal(1, l.Count);
    }

    [Fact]
    public void A_flood_of_keys_is_bounded_and_the_fullest_buckets_are_kept()
    {
        var l = Limiter(0.001, 5, maxKeys: 100);
        // One abuser fills its bucket; then a flood of fresh keys, each one action.
        for (var i = 0; i < 5; i++) l.TryAcquire("abuser", out _);
        for (var i = 0; i < 10_000; i++) l.TryAcquire($"spoofed{i}", out _);
        Assert.True(l.Count <= 100, $"{l.Count} buckets");
        Assert.False(l.TryAcquire("abuser", out _));
    }

    [Fact]
    public void Take_counts_all_charges_or_none_and_answers_429_with_the_longest_wait()
    {
        var limits = new RateLimits(new GlobalConfig(), _clock);
        var ctx = new DefaultHttpContext();
        var c = new Caller("@a:x", "D");
        for (var i = 0; i < 10; i++) limits.Take(ctx, c, new(limits.InvitesPerRoom, "!r:x"), new(limits.InvitesPerIssuer, c.UserId));
        var e = Assert.Throws<MatrixException>(() => limits.Take(ctx, c, new(limits.InvitesPerRoom, "!r:x"), new(limits.InvitesPerUser, "@b:x")));
        Assert.Equal(("M_LIMIT_EXCEEDED", 429), (e.ErrCode, e.Status));
        Assert.Equal(3334, e.Extra!["retry_after_ms"]!.GetValue<long>());
        Assert.Equal("4", ctx.Response.Headers.RetryAfter.ToString());
        // The refused request took nothing from the invitee's bucket.
        for (var i = 0; i < 5; i++) Assert.True(limits.InvitesPerUser!.TryAcquire("@b:x", out _));
    }

    [Fact]
    public void An_appservice_registered_with_rate_limited_false_is_exempt_and_nobody_else()
    {
        static Appservices.AppserviceRegistration Registration(string id, bool rateLimited) => Appservices.AppserviceLoader.Parse($"""
            id: {id}
            url: null
            as_token: as_{id}
            hs_token: hs_{id}
            sender_localpart: {id}
            rate_limited: {(rateLimited ? "true" : "false")}
            """, id + ".yaml");
        var config = new GlobalConfig();
        config.SetAppservices([Registration("free", false), Registration("limited", true)]);
        var limits = new RateLimits(config, _clock);
        var ctx = new DefaultHttpContext();
        var free = new Caller("@free:x", "") { AppserviceId = "free" };
        for (var i = 0; i < 100; i++) limits.Take(ctx, free, new Charge(limits.Message, free.UserId));
        var limited = new Caller("@limited:x", "") { AppserviceId = "limited" };
        Assert.False(limits.IsExempt(limited));
        Assert.False(limits.IsExempt(new Caller("@a:x", "D", IsAdmin: true)));
        Assert.False(limits.IsExempt(null));
        Assert.Throws<MatrixException>(() => { for (var i = 0; i < 100; i++) limits.Take(ctx, limited, new Charge(limits.Message, limited.UserId)); });

        // Registered at runtime after the limits were built: exempt at once; unregistered: limited again.
        var late = new Caller("@late:x", "") { AppserviceId = "late" };
        Assert.False(limits.IsExempt(late));
        config.SetRuntimeAppservices([Registration("late", false)]);
        Assert.True(limits.IsExempt(late));
        config.SetRuntimeAppservices([]);
        Assert.False(limits.IsExempt(late));
    }

    [Fact]
    public void Disabled_limits_take_nothing()
    {
        var config = ConfigLoader.Parse("[global.rate_limits]\nenabled = false\n", "t.toml", new Hashtable()).Global;
        var limits = new RateLimits(config);
        Assert.Null(limits.Message);
        var ctx = new DefaultHttpContext();
        for (var i = 0; i < 1000; i++) limits.Take(ctx, null, new(limits.Registration, "127.0.0.1"), new(limits.LoginAddress, "127.0.0.1"));
    }
}

public sealed class RateLimitConfigTests
{
    static LoadedConfig Parse(string toml) => ConfigLoader.Parse("[global]\nserver_name = \"example.org\"\n" + toml, "conduit.toml", new Hashtable());

    [Fact]
    public void The_defaults_apply_without_a_table()
    {
        var l = new RateLimits(Parse("").Global);
        Assert.Equal((0.5, 20.0), (l.Message!.PerSecond, l.Message.BurstCount));
        Assert.Equal((0.17, 3.0), (l.Registration!.PerSecond, l.Registration.BurstCount));
        Assert.Equal((0.17, 3.0), (l.LoginFailedAttempts!.PerSecond, l.LoginFailedAttempts.BurstCount));
        Assert.Equal((0.016, 10.0), (l.RoomCreation!.PerSecond, l.RoomCreation.BurstCount));
        Assert.Equal((0.003, 5.0), (l.InvitesPerUser!.PerSecond, l.InvitesPerUser.BurstCount));
    }

    [Fact]
    public void Synapse_style_keys_set_each_limit_and_a_missing_key_keeps_its_default()
    {
        var c = Parse("""
            [global.rate_limits]
            message = { per_second = 1, burst_count = 50 }
            registration = { burst_count = 7 }
            [global.rate_limits.login]
            address = { per_second = 0.5, burst_count = 4 }
            failed_attempts = { per_second = 0.01 }
            [global.rate_limits.invites]
            per_user = { per_second = 2, burst_count = 30 }
            """);
        Assert.Empty(c.Warnings);
        var l = new RateLimits(c.Global);
        Assert.Equal((1.0, 50.0), (l.Message!.PerSecond, l.Message.BurstCount));
        Assert.Equal((0.17, 7.0), (l.Registration!.PerSecond, l.Registration.BurstCount));
        Assert.Equal((0.5, 4.0), (l.LoginAddress!.PerSecond, l.LoginAddress.BurstCount));
        Assert.Equal((0.01, 3.0), (l.LoginFailedAttempts!.PerSecond, l.LoginFailedAttempts.BurstCount));
        Assert.Equal((2.0, 30.0), (l.InvitesPerUser!.PerSecond, l.InvitesPerUser.BurstCount));
        Assert.Equal((0.3, 10.0), (l.InvitesPerRoom!.PerSecond, l.InvitesPerRoom.BurstCount));
    }

    // The README's Configuration example shows every limit with its default: it must parse, name only known keys,
    // and say what the code does.
    [Fact]
    public void The_readme_example_shows_the_defaults()
    {
        var readme = File.ReadAllText(Path.Combine(RepoRoot(), "README.md"));
        var block = System.Text.RegularExpressions.Regex.Matches(readme, "```toml\n(.*?)```", System.Text.RegularExpressions.RegexOptions.Singleline)
            .Select(m => m.Groups[1].Value).Single(b => b.Contains("[global.rate_limits]"));
        var c = ConfigLoader.Parse(block, "README.md", new Hashtable());
        Assert.Empty(c.Warnings);
        Assert.Equal(["127.0.0.1"], c.Global.TrustedProxies);
        var documented = new RateLimits(c.Global);
        var defaults = new RateLimits(new GlobalConfig());
        foreach (var p in typeof(RateLimits).GetProperties())
        {
            var (d, x) = ((RateLimiter)p.GetValue(documented)!, (RateLimiter)p.GetValue(defaults)!);
            Assert.True((d.PerSecond, d.BurstCount) == (x.PerSecond, x.BurstCount), $"{p.Name}: README {d.PerSecond}/{d.BurstCount}, code {x.PerSecond}/{x.BurstCount}");
        }
        Assert.Equal(12, typeof(RateLimits).GetProperties().Length);
    }

    // From the test binaries, else from this source file: with CONDUIT_ARTIFACTS the binaries live outside the repository.
    static string RepoRoot([System.Runtime.CompilerServices.CallerFilePath] string sourceFile = "")
    {
        static string? Up(string? dir)
        {
            var d = dir is null ? null : new DirectoryInfo(dir);
            while (d is not null && !File.Exists(Path.Combine(d.FullName, "Conduit.Services.sln"))) d = d.Parent;
            return d?.FullName;
        }
        return Up(AppContext.BaseDirectory) ?? Up(Path.GetDirectoryName(sourceFile)) ?? throw new InvalidOperationException("repository root not found");
    }

    [Fact]
    public void An_environment_variable_turns_limits_off()
    {
        var c = ConfigLoader.Parse("[global]\n", "conduit.toml", new Hashtable { ["CONDUIT_RATE_LIMITS__ENABLED"] = "false" });
        Assert.False(c.Global.RateLimits.Enabled);
    }

    [Fact]
    public void Unknown_keys_are_warnings_naming_them()
    {
        var c = Parse("""
            [global.rate_limits]
            mesage = { per_second = 1 }
            joins = { remote = { per_second = 1 } }
            login = { address = { per_second = 1, burst = 3 } }
            """);
        Assert.Contains(c.Warnings, w => w.Contains("'global.rate_limits.mesage'"));
        Assert.Contains(c.Warnings, w => w.Contains("'global.rate_limits.joins.remote'"));
        Assert.Contains(c.Warnings, w => w.Contains("'global.rate_limits.login.address.burst'"));
    }

    [Theory]
    [InlineData("message = { per_second = 0 }", "message.per_second")]
    [InlineData("message = { per_second = -1 }", "message.per_second")]
    [InlineData("login = { account = { burst_count = 0.5 } }", "login.account.burst_count")]
    public void Impossible_limits_stop_the_server_naming_the_key(string line, string key)
    {
        var e = Assert.Throws<ConfigException>(() => Parse("[global.rate_limits]\n" + line + "\n"));
        Assert.Contains($"global.rate_limits.{key}", e.Message);
    }

    [Fact]
    public void Trusted_proxies_must_be_addresses_or_ranges()
    {
        Assert.Equal(new[] { "127.0.0.1", "10.0.0.0/8", "fd00::/8" }, Parse("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\"]\n").Global.TrustedProxies);
        var e = Assert.Throws<ConfigException>(() => Parse("trusted_proxies = [\"proxy.example.org\"]\n"));
        Assert.Contains("trusted_proxies", e.Message);
        Assert.Contains("proxy.example.org", e.Message);
    }

    [Theory]
    [InlineData("url_preview_ip_range_denylist = [\"10.0.0.0/33\"]", "url_preview_ip_range_denylist")]
    [InlineData("url_preview_ip_range_allowlist = [\"intranet.example.org\"]", "url_preview_ip_range_allowlist")]
    [InlineData("url_preview_max_spider_size = 0", "url_preview_max_spider_size")]
    public void Url_preview_ranges_must_be_addresses_or_ranges(string line, string key)
    {
        var e = Assert.Throws<ConfigException>(() => Parse(line + "\n"));
        Assert.Contains($"global.{key}", e.Message);
        Assert.Equal(["192.168.0.0/16"], Parse("url_preview_ip_range_allowlist = [\"192.168.0.0/16\"]\n").Global.UrlPreviewIpRangeAllowlist);
    }
}

public sealed class TrustedProxiesTests
{
    static IPAddress Resolve(string[] trusted, string peer, params string[] forwardedFor)
        => TrustedProxies.Parse(trusted).Resolve(IPAddress.Parse(peer), forwardedFor);

    [Fact]
    public void Without_trusted_proxies_forwarded_for_is_ignored()
        => Assert.Equal("203.0.113.5", Resolve([], "203.0.113.5", "198.51.100.1").ToString());

    [Fact]
    public void Forwarded_for_from_an_untrusted_peer_is_ignored()
        => Assert.Equal("203.0.113.5", Resolve(["10.0.0.0/8"], "203.0.113.5", "198.51.100.1").ToString());

    [Fact]
    public void From_a_trusted_proxy_the_right_most_untrusted_address_is_the_client()
    {
        // The client forged the first entry; the proxy appended the address it saw.
        Assert.Equal("198.51.100.7", Resolve(["127.0.0.1"], "127.0.0.1", "6.6.6.6, 198.51.100.7").ToString());
        // Two proxies in a row, one header per hop.
        Assert.Equal("198.51.100.7", Resolve(["127.0.0.1", "10.0.0.0/8"], "127.0.0.1", "6.6.6.6", "198.51.100.7, 10.1.2.3").ToString());
    }

    [Fact]
    public void Ports_mapped_addresses_and_garbage_are_handled()
    {
        Assert.Equal("198.51.100.7", Resolve(["127.0.0.1"], "::ffff:127.0.0.1", "198.51.100.7:5555").ToString());
        Assert.Equal("2001:db8::1", Resolve(["127.0.0.1"], "127.0.0.1", "[2001:db8::1]:443").ToString());
        // Nothing usable after the proxy: the proxy itself is all we know.
        Assert.Equal("127.0.0.1", Resolve(["127.0.0.1"], "127.0.0.1", "unknown").ToString());
        Assert.Equal("127.0.0.1", Resolve(["127.0.0.1"], "127.0.0.1").ToString());
    }

    [Fact]
    public void Ranges_with_host_bits_mean_the_range_they_are_in()
    {
        var t = TrustedProxies.Parse(["192.168.1.7/24", "::1"]);
        Assert.True(t.Contains(IPAddress.Parse("192.168.1.200")));
        Assert.False(t.Contains(IPAddress.Parse("192.168.2.1")));
        Assert.True(t.Contains(IPAddress.IPv6Loopback));
        Assert.False(TrustedProxies.TryParseEntry("10.0.0.0/33", out _));
        Assert.False(TrustedProxies.TryParseEntry("localhost", out _));
    }
}
