using Conduit.Common.Storage;
using Conduit.Sync;

namespace Conduit.Sync.Tests;

public sealed class PresenceStateTests : IDisposable
{
    const string Alice = "@alice:test.local";
    readonly IKeyValueStore _kv = KvStore.Open("memory", "", SyncFamilies.All);
    long _now = 1_000_000;

    PresenceState New() => new(_kv, () => _now);

    public void Dispose() => _kv.Dispose();

    [Fact]
    public void Set_takes_a_position_and_survives_a_restart()
    {
        var p = New();
        p.Set(Alice, "online", "hi");
        Assert.Equal(1, p.Position);
        var again = New();
        Assert.Equal(1, again.Position);
        var info = again.Get(Alice)!;
        Assert.Equal(("online", "hi", _now), (info.Presence, info.StatusMsg, info.LastActiveTs));
    }

    [Fact]
    public void Syncing_while_currently_active_changes_nothing_and_offline_changes_nothing()
    {
        var p = New();
        p.Synced(Alice, "online");
        var pos = p.Position;
        _now += 10_000;
        p.Synced(Alice, "online");
        p.Synced(Alice, "offline");
        Assert.Equal(pos, p.Position);
        Assert.Equal(_now, p.Get(Alice)!.LastActiveTs);
    }

    [Fact]
    public void The_timer_announces_the_end_of_activity_then_idle_then_offline()
    {
        var p = New();
        var changed = new List<string>();
        p.Changed += changed.Add;
        p.Synced(Alice, "online");
        _now += PresenceInfo.CurrentlyActiveMs;
        p.Tick();
        Assert.Equal(2, changed.Count);
        Assert.False(p.Get(Alice)!.CurrentlyActive(_now));
        Assert.Equal("online", p.Get(Alice)!.Presence);
        _now += PresenceState.IdleMs;
        p.Tick();
        Assert.Equal("unavailable", p.Get(Alice)!.Presence);
        _now += PresenceState.OfflineMs;
        p.Tick();
        Assert.Equal("offline", p.Get(Alice)!.Presence);
        var pos = p.Position;
        p.Tick();
        Assert.Equal(pos, p.Position);
    }

    [Fact]
    public void ChangedSince_gives_the_users_changed_after_a_position()
    {
        var p = New();
        p.Set(Alice, "online", null);
        p.Set("@bob:test.local", "unavailable", null);
        Assert.Equal(["@bob:test.local"], p.ChangedSince([Alice, "@bob:test.local"], 1, p.Position).Select(i => i.UserId));
        Assert.Equal(2, p.ChangedSince([Alice, "@bob:test.local", "@carol:test.local"], 0, p.Position).Count);
    }
}
