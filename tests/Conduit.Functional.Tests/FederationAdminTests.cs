using System.Net;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>
/// The admin endpoints that need two servers (on the pair fixtures of <see cref="FederationRoomTests"/>, whose servers
/// each have <see cref="FederationPair.AdminLocalpart"/> as a config admin): the federation destinations with their
/// backoff and reset_connection, and taking a room off federation and back.
/// </summary>
public abstract partial class FederationRoomTests
{
    const string Destinations = "/_synapse/admin/v1/federation/destinations";

    /// <summary>The server's config admin: registered on first use, logged in after.</summary>
    static async Task<MatrixClient> AdminOf(ServerFixture server)
    {
        var c = new MatrixClient(server);
        var login = await c.Call("POST", C + "/login", new JsonObject
        {
            ["type"] = "m.login.password",
            ["identifier"] = new JsonObject { ["type"] = "m.id.user", ["user"] = FederationPair.AdminLocalpart },
            ["password"] = "correct horse",
        }, auth: false);
        if (login.Status != HttpStatusCode.OK) return await Register(server, FederationPair.AdminLocalpart);
        c.Token = login.Obj["access_token"]!.GetValue<string>();
        c.UserId = login.Obj["user_id"]!.GetValue<string>();
        c.DeviceId = login.Obj["device_id"]!.GetValue<string>();
        return c;
    }

    /// <summary>Asks for one destination until <paramref name="done"/> holds for it.</summary>
    static async Task<JsonObject> DestinationUntil(MatrixClient admin, string destination, Func<JsonObject, bool> done, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        Response last;
        do
        {
            last = await admin.Get($"{Destinations}/{E(destination)}");
            if (last.Status == HttpStatusCode.OK && done(last.Obj)) return last.Obj;
            await Task.Delay(200);
        }
        while (DateTime.UtcNow < deadline);
        throw new Xunit.Sdk.XunitException($"{destination} never showed {what}: {(int)last.Status} {last.Body?.ToJsonString()}");
    }

    [Fact]
    public async Task Admins_see_the_destinations_their_server_sends_to_and_reset_a_dead_ones_backoff()
    {
        var admin = await AdminOf(pair.A);
        // B's own admin first, so that bob is never B's first account (which would make him an admin of B when this
        // test runs alone).
        await AdminOf(pair.B);
        var bob = await Register(pair.B);
        var room = await admin.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        await admin.SendText(room, "to B");
        await SyncUntil(bob, s => Sees(s, room, "to B"), "the admin's message");

        // B took a transaction: listed, not failing, with the newest delivered position.
        var peer = await DestinationUntil(admin, pair.B.ServerName, d => d["last_successful_stream_ordering"] is not null, "a delivered transaction");
        Assert.Equal(0, peer["retry_interval"]!.GetValue<long>());
        Assert.Null(peer["failure_ts"]);
        var list = (await admin.Get($"{Destinations}?destination={E(pair.B.ServerName)}")).Ok().Obj;
        Assert.Contains(list["destinations"]!.AsArray(), d => d!["destination"]!.GetValue<string>() == pair.B.ServerName);
        Assert.True(list["total"]!.GetValue<int>() >= 1);

        // A ban of a user of a server nobody listens for (port 1) goes to that server too: it fails and backs off.
        const string dead = "localhost:1";
        (await admin.Post($"{C}/rooms/{E(room)}/ban", new JsonObject { ["user_id"] = "@ghost:" + dead })).Ok();
        var failing = await DestinationUntil(admin, dead, d => d["retry_interval"]!.GetValue<long>() > 0, "a backoff");
        Assert.True(failing["retry_last_ts"]!.GetValue<long>() > 0 && failing["failure_ts"] is not null, failing.ToJsonString());
        Assert.True(failing["queued_pdus"]!.GetValue<int>() >= 1, failing.ToJsonString());
        var byInterval = (await admin.Get($"{Destinations}?order_by=retry_interval&dir=b")).Ok().Obj["destinations"]!.AsArray();
        var intervals = byInterval.Select(d => d!["retry_interval"]!.GetValue<long>()).ToList();
        Assert.Equal(intervals.OrderDescending(), intervals);
        Assert.Contains(byInterval, d => d!["destination"]!.GetValue<string>() == dead);

        // reset_connection ends the backoff and tries at once: the failures (if the new try failed already) start over.
        var resetAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Assert.Empty((await admin.Post($"{Destinations}/{E(dead)}/reset_connection", new JsonObject())).Ok().Obj);
        var after = (await admin.Get($"{Destinations}/{E(dead)}")).Ok().Obj;
        Assert.True(after["retry_interval"]!.GetValue<long>() == 0 || after["failure_ts"]!.GetValue<long>() >= resetAt - 1000, after.ToJsonString());
        Assert.True(after["failures"]!.GetValue<int>() <= 1, after.ToJsonString());

        var own = await admin.Post($"{Destinations}/{E(pair.A.ServerName)}/reset_connection", new JsonObject());
        Assert.Equal((HttpStatusCode.BadRequest, "M_INVALID_PARAM"), (own.Status, own.ErrCode));
        var forbidden = await bob.Get(Destinations);
        Assert.Equal((HttpStatusCode.Forbidden, "M_FORBIDDEN"), (forbidden.Status, forbidden.ErrCode));
    }

    [Fact]
    public async Task A_room_taken_off_federation_sends_nothing_and_refuses_other_servers_until_it_is_back()
    {
        var admin = await AdminOf(pair.A);
        var bob = await Register(pair.B);
        var room = await admin.CreateRoom(new JsonObject { ["preset"] = "public_chat" });
        (await bob.Post($"{C}/join/{E(room)}?via={E(pair.A.ServerName)}", new JsonObject())).Ok();
        await admin.SendText(room, "before");
        var since = (await SyncUntil(bob, s => Sees(s, room, "before"), "the first message"))["next_batch"]!.GetValue<string>();

        var federation = $"/_conduit/admin/v1/rooms/{E(room)}/federation";
        Assert.True((await admin.Put(federation, new JsonObject { ["disabled"] = true })).Ok().Obj["disabled"]!.GetValue<bool>());
        var state = (await admin.Get(federation)).Ok().Obj;
        Assert.True(state["disabled"]!.GetValue<bool>());
        Assert.Equal(admin.UserId, state["user_id"]!.GetValue<string>());

        // Local users still use the room; nothing of it reaches B, and what B sends is refused.
        var adminSince = (await admin.Sync())["next_batch"]!.GetValue<string>();
        await admin.SendText(room, "while off");
        await bob.SendText(room, "from B while off");
        var quiet = await bob.Sync(since, timeoutMs: 3000);
        Assert.DoesNotContain("while off", TimelineBodies(quiet, room));
        since = quiet["next_batch"]!.GetValue<string>();
        var later = await bob.Sync(since, timeoutMs: 2000);
        Assert.DoesNotContain("while off", TimelineBodies(later, room));
        Assert.DoesNotContain("from B while off", TimelineBodies(await admin.Sync(adminSince, timeoutMs: 1000), room));

        // Back on: later messages cross again.
        Assert.False((await admin.Put(federation, new JsonObject { ["disabled"] = false })).Ok().Obj["disabled"]!.GetValue<bool>());
        Assert.False((await admin.Get(federation)).Ok().Obj["disabled"]!.GetValue<bool>());
        await admin.SendText(room, "back on");
        await SyncUntil(bob, s => Sees(s, room, "back on"), "the message after federation was back", later["next_batch"]!.GetValue<string>());
    }
}
