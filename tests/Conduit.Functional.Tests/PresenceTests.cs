using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Presence (spec: client-server-api, "Presence") through the edge: the status API, set_presence on
/// /sync, and m.presence events in /sync for users who share a room.</summary>
public abstract class PresenceTests(ServerFixture server)
{
    /// <summary>Alice's public room, which Bob has joined.</summary>
    Task<(MatrixClient Alice, MatrixClient Bob, string Room)> Pair() => PublicRoomPair(server);

    internal static string StatusPath(string userId) => $"{C}/presence/{E(userId)}/status";

    internal static JsonObject Status(string presence, string? msg = null)
    {
        var o = new JsonObject { ["presence"] = presence };
        if (msg is not null) o["status_msg"] = msg;
        return o;
    }

    internal static JsonObject? PresenceOf(JsonObject sync, string userId)
        => (sync["presence"]?["events"] as JsonArray ?? []).LastOrDefault(e => e?["sender"]?.GetValue<string>() == userId) is { } e
            ? Assert.IsType<JsonObject>(e["content"]) is var c && e["type"]!.GetValue<string>() == "m.presence" ? c : throw new Exception("not m.presence")
            : null;

    static string Batch(JsonObject sync) => sync["next_batch"]!.GetValue<string>();

    static void Error(Response r, HttpStatusCode status, string errcode)
        => Assert.True(r.Status == status && r.ErrCode == errcode, $"expected {(int)status} {errcode}, got {(int)r.Status}: {r.Body?.ToJsonString()}");

    /// <summary>Syncs with set_presence=offline, so the syncing user's own presence stays as it is.</summary>
    static async Task<JsonObject> QuietSync(MatrixClient c, string? since = null, int timeoutMs = 0)
    {
        var q = $"?timeout={timeoutMs}&set_presence=offline";
        if (since is not null) q += "&since=" + E(since);
        return (await c.Get(C + "/sync" + q)).Ok().Obj;
    }

    static async Task<JsonObject> SyncUntil(MatrixClient c, string since, Func<JsonObject, bool> done)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var s = await QuietSync(c, since, 5000);
            if (done(s)) return s;
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(15), "no such /sync response in 15 s: " + s.ToJsonString());
            since = Batch(s);
        }
    }

    [Fact]
    public async Task Set_and_get_own_status_with_a_message()
    {
        var (a, b, _) = await Pair();
        (await a.Put(StatusPath(a.UserId), Status("online", "in a meeting"))).Ok();
        var mine = (await a.Get(StatusPath(a.UserId))).Ok().Obj;
        Assert.Equal("online", mine["presence"]!.GetValue<string>());
        Assert.Equal("in a meeting", mine["status_msg"]!.GetValue<string>());
        Assert.True(mine["currently_active"]!.GetValue<bool>());
        Assert.InRange(mine["last_active_ago"]!.GetValue<long>(), 0, 60_000);

        // A room-mate may read it too.
        var seen = (await b.Get(StatusPath(a.UserId))).Ok().Obj;
        Assert.Equal("in a meeting", seen["status_msg"]!.GetValue<string>());

        (await a.Put(StatusPath(a.UserId), Status("unavailable"))).Ok();
        var later = (await b.Get(StatusPath(a.UserId))).Ok().Obj;
        Assert.Equal("unavailable", later["presence"]!.GetValue<string>());
        Assert.False(later["currently_active"]!.GetValue<bool>());
        Assert.Null(later["status_msg"]);
    }

    [Fact]
    public async Task A_room_mate_sees_m_presence_in_incremental_and_initial_sync()
    {
        var (a, b, _) = await Pair();
        var since = Batch(await QuietSync(b));
        (await a.Put(StatusPath(a.UserId), Status("online", "hello"))).Ok();

        var inc = await SyncUntil(b, since, s => PresenceOf(s, a.UserId) is not null);
        var p = PresenceOf(inc, a.UserId)!;
        Assert.Equal("online", p["presence"]!.GetValue<string>());
        Assert.Equal("hello", p["status_msg"]!.GetValue<string>());
        Assert.True(p["currently_active"]!.GetValue<bool>());
        Assert.NotNull(p["last_active_ago"]);

        var initial = await QuietSync(b);
        Assert.Equal("hello", PresenceOf(initial, a.UserId)!["status_msg"]!.GetValue<string>());
        // Nothing new since the initial sync's token.
        Assert.Null(PresenceOf(await QuietSync(b, Batch(initial)), a.UserId));
    }

    [Fact]
    public async Task A_stranger_gets_403_and_sees_nothing_in_sync()
    {
        var (a, _, _) = await Pair();
        var stranger = await Register(server);
        var since = Batch(await QuietSync(stranger));
        (await a.Put(StatusPath(a.UserId), Status("online", "secret"))).Ok();
        Error(await stranger.Get(StatusPath(a.UserId)), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Assert.Null(PresenceOf(await QuietSync(stranger, since), a.UserId));
        Assert.Null(PresenceOf(await QuietSync(stranger), a.UserId));
    }

    [Fact]
    public async Task Setting_someone_elses_presence_is_403_invalid_presence_400_unknown_user_404()
    {
        var (a, b, _) = await Pair();
        Error(await a.Put(StatusPath(b.UserId), Status("online")), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await a.Put(StatusPath(a.UserId), Status("busy")), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await a.Get(StatusPath($"@nobody{Guid.NewGuid():N}:{server.ServerName}")), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    [Fact]
    public async Task A_long_poll_returns_promptly_when_a_room_mates_presence_changes()
    {
        var (a, b, _) = await Pair();
        var since = Batch(await QuietSync(b));
        var sw = Stopwatch.StartNew();
        var poll = QuietSync(b, since, 20_000);
        await Task.Delay(500);
        (await a.Put(StatusPath(a.UserId), Status("unavailable", "away"))).Ok();
        var s = await poll;
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"the long-poll took {sw.Elapsed}");
        Assert.Equal("unavailable", PresenceOf(s, a.UserId)!["presence"]!.GetValue<string>());
    }

    [Fact]
    public async Task Set_presence_on_sync_shows_as_such_and_offline_changes_nothing()
    {
        var (a, b, _) = await Pair();
        var since = Batch(await QuietSync(b));
        (await a.Get($"{C}/sync?timeout=0&set_presence=unavailable")).Ok();
        var s = await SyncUntil(b, since, x => PresenceOf(x, a.UserId) is not null);
        Assert.Equal("unavailable", PresenceOf(s, a.UserId)!["presence"]!.GetValue<string>());
        Assert.Equal("unavailable", (await b.Get(StatusPath(a.UserId))).Ok().Obj["presence"]!.GetValue<string>());

        // set_presence=offline: the client does not mark the user online; nothing changes.
        await QuietSync(a);
        Assert.Equal("unavailable", (await b.Get(StatusPath(a.UserId))).Ok().Obj["presence"]!.GetValue<string>());

        // The default (online) marks the user online and active.
        (await a.Get($"{C}/sync?timeout=0")).Ok();
        var online = (await b.Get(StatusPath(a.UserId))).Ok().Obj;
        Assert.Equal("online", online["presence"]!.GetValue<string>());
        Assert.True(online["currently_active"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Old_five_slot_tokens_keep_working()
    {
        var (a, b, _) = await Pair();
        var token = Batch(await QuietSync(b));
        Assert.Equal(6, token.Split('_').Length);
        var old = string.Join('_', token.Split('_').Take(5));
        (await a.Put(StatusPath(a.UserId), Status("online", "old token"))).Ok();
        var s = await QuietSync(b, old);
        Assert.Equal("old token", PresenceOf(s, a.UserId)!["status_msg"]!.GetValue<string>());
        Assert.Equal(6, Batch(s).Split('_').Length);
    }
}

public sealed class AllInOnePresenceTests(AllInOneFixture f) : PresenceTests(f), IClassFixture<AllInOneFixture>;

public sealed class SplitPresenceTests(SplitFixture f) : PresenceTests(f), IClassFixture<SplitFixture>;

/// <summary>allow_presence = false.</summary>
public sealed class PresenceOffFixture : AllInOneFixture
{
    protected override string ExtraConfig => base.ExtraConfig + "\nallow_presence = false";
}

public sealed class PresenceOffTests(PresenceOffFixture server) : IClassFixture<PresenceOffFixture>
{
    [Fact]
    public async Task Presence_off_refuses_the_api_and_sync_carries_none()
    {
        var (a, b, _) = await PublicRoomPair(server);
        var since = (await b.Sync())["next_batch"]!.GetValue<string>();
        var put = await a.Put(PresenceTests.StatusPath(a.UserId), PresenceTests.Status("online"));
        Assert.True(put.Status == HttpStatusCode.Forbidden && put.ErrCode == "M_FORBIDDEN", put.Body?.ToJsonString());
        var get = await b.Get(PresenceTests.StatusPath(a.UserId));
        Assert.Equal(HttpStatusCode.Forbidden, get.Status);
        // Syncs with the default set_presence change nothing either.
        await a.Sync();
        Assert.Empty((await b.Sync(since))["presence"]!["events"]!.AsArray());
        Assert.Empty((await b.Sync())["presence"]!["events"]!.AsArray());
    }
}
