using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Storage;
using Conduit.Keys;

namespace Conduit.Keys.Tests;

public sealed class AccountStoreTests : IDisposable
{
    readonly IKeyValueStore _kv = KvStore.Open("memory", "", KeysFamilies.All);
    readonly AccountStore _accounts;

    public AccountStoreTests() => _accounts = TestStores.Accounts(_kv);

    public void Dispose() => _kv.Dispose();

    [Fact]
    public void Register_CreatesTheUserAndAFirstDevice()
    {
        var login = _accounts.Register("alice", "pw1", "DEV1", "Alice's phone", inhibitLogin: false, ip: "10.0.0.1");
        Assert.NotNull(login);
        Assert.Equal("@alice:test.local", login.UserId);
        Assert.Equal("DEV1", login.DeviceId);
        Assert.StartsWith("syt_", login.AccessToken);
        Assert.True(_accounts.Exists("@alice:test.local"));
        var dev = Assert.Single(_accounts.Devices("@alice:test.local"));
        Assert.Equal("DEV1", dev.DeviceId);
        Assert.Equal("Alice's phone", dev.DisplayName);
        Assert.Equal("10.0.0.1", dev.LastSeenIp);
        Assert.True(_accounts.CheckPassword("@alice:test.local", "pw1"));
        Assert.False(_accounts.CheckPassword("@alice:test.local", "pw2"));
    }

    [Fact]
    public void Register_WithInhibitLogin_CreatesNoDevice()
    {
        Assert.Null(_accounts.Register("bob", "pw", null, null, inhibitLogin: true, ip: null));
        Assert.True(_accounts.Exists("@bob:test.local"));
        Assert.Empty(_accounts.Devices("@bob:test.local"));
    }

    [Fact]
    public void Register_SameLocalpartTwice_IsUserInUse()
    {
        _accounts.Register("alice", "pw1", null, null, false, null);
        var e = Assert.Throws<MatrixException>(() => _accounts.Register("alice", "other", null, null, false, null));
        Assert.Equal("M_USER_IN_USE", e.ErrCode);
        Assert.Equal(400, e.Status);
        // The first account is untouched.
        Assert.True(_accounts.CheckPassword("@alice:test.local", "pw1"));
        Assert.False(_accounts.CheckPassword("@alice:test.local", "other"));
        Assert.Single(_accounts.Devices("@alice:test.local"));
    }

    [Fact]
    public void Login_GivesATokenThatResolvesToUserAndDevice()
    {
        _accounts.Register("alice", "pw", null, null, inhibitLogin: true, ip: null);
        var login = _accounts.Login("@alice:test.local", "LAPTOP", "laptop", "127.0.0.1");
        Assert.Equal("@alice:test.local", login.UserId);
        Assert.Equal("LAPTOP", login.DeviceId);
        Assert.Equal(("@alice:test.local", "LAPTOP"), _accounts.ResolveToken(login.AccessToken));
        Assert.Null(_accounts.ResolveToken("syt_not_a_token"));
    }

    [Fact]
    public void Login_WithoutDeviceId_MakesADistinctDeviceEachTime()
    {
        _accounts.Register("alice", "pw", null, null, inhibitLogin: true, ip: null);
        var a = _accounts.Login("@alice:test.local", null, null, null);
        var b = _accounts.Login("@alice:test.local", null, null, null);
        Assert.NotEqual(a.DeviceId, b.DeviceId);
        Assert.NotEqual(a.AccessToken, b.AccessToken);
        Assert.Equal(2, _accounts.Devices("@alice:test.local").Count);
        Assert.Equal(("@alice:test.local", a.DeviceId), _accounts.ResolveToken(a.AccessToken));
        Assert.Equal(("@alice:test.local", b.DeviceId), _accounts.ResolveToken(b.AccessToken));
    }

    [Fact]
    public async Task Login_AgainOnTheSameDevice_RevokesTheOldToken()
    {
        _accounts.Register("alice", "pw", null, null, inhibitLogin: true, ip: null);
        var first = _accounts.Login("@alice:test.local", "DEV", "name", null);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var watch = _accounts.WatchRevocations(cts.Token).GetAsyncEnumerator(cts.Token);
        var next = watch.MoveNextAsync();

        var second = _accounts.Login("@alice:test.local", "DEV", null, null);

        Assert.Null(_accounts.ResolveToken(first.AccessToken));
        Assert.Equal(("@alice:test.local", "DEV"), _accounts.ResolveToken(second.AccessToken));
        Assert.True(await next);
        Assert.Equal(first.AccessToken, watch.Current);
        // The device keeps its display name when the new login gives none.
        Assert.Equal("name", Assert.Single(_accounts.Devices("@alice:test.local")).DisplayName);
    }

    [Fact]
    public async Task DeleteDevices_RevokesTheTokenAndPublishesIt()
    {
        var login = _accounts.Register("alice", "pw", "DEV1", null, false, null)!;
        var other = _accounts.Login("@alice:test.local", "DEV2", null, null);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var watch = _accounts.WatchRevocations(cts.Token).GetAsyncEnumerator(cts.Token);
        var next = watch.MoveNextAsync(); // subscribes before the deletion

        _accounts.DeleteDevices("@alice:test.local", ["DEV1", "NO_SUCH_DEVICE"]);

        Assert.Null(_accounts.ResolveToken(login.AccessToken));
        Assert.Null(_accounts.Device("@alice:test.local", "DEV1"));
        Assert.Equal(("@alice:test.local", "DEV2"), _accounts.ResolveToken(other.AccessToken));
        Assert.Equal("DEV2", Assert.Single(_accounts.Devices("@alice:test.local")).DeviceId);
        Assert.True(await next);
        Assert.Equal(login.AccessToken, watch.Current);
    }

    [Fact]
    public void Deactivate_MakesThePasswordFailAndRemovesEveryDevice()
    {
        var a = _accounts.Register("alice", "pw", "DEV1", null, false, null)!;
        var b = _accounts.Login("@alice:test.local", "DEV2", null, null);

        _accounts.Deactivate("@alice:test.local");

        Assert.False(_accounts.CheckPassword("@alice:test.local", "pw"));
        Assert.Empty(_accounts.Devices("@alice:test.local"));
        Assert.Null(_accounts.ResolveToken(a.AccessToken));
        Assert.Null(_accounts.ResolveToken(b.AccessToken));
        // The ID stays taken.
        Assert.True(_accounts.Exists("@alice:test.local"));
        var e = Assert.Throws<MatrixException>(() => _accounts.Register("alice", "pw", null, null, false, null));
        Assert.Equal("M_USER_IN_USE", e.ErrCode);
        Assert.True(_accounts.GetUser("@alice:test.local")!["deactivated"]!.GetValue<bool>());
    }

    [Fact]
    public void SetPassword_WithLogout_KeepsOnlyTheCurrentDevice()
    {
        var current = _accounts.Register("alice", "old", "CURRENT", null, false, null)!;
        var other1 = _accounts.Login("@alice:test.local", "OTHER1", null, null);
        var other2 = _accounts.Login("@alice:test.local", "OTHER2", null, null);

        _accounts.SetPassword("@alice:test.local", "new", logoutDevices: true, keepDevice: "CURRENT");

        Assert.True(_accounts.CheckPassword("@alice:test.local", "new"));
        Assert.False(_accounts.CheckPassword("@alice:test.local", "old"));
        Assert.Equal(("@alice:test.local", "CURRENT"), _accounts.ResolveToken(current.AccessToken));
        Assert.Null(_accounts.ResolveToken(other1.AccessToken));
        Assert.Null(_accounts.ResolveToken(other2.AccessToken));
        Assert.Equal("CURRENT", Assert.Single(_accounts.Devices("@alice:test.local")).DeviceId);
    }

    [Fact]
    public void SetPassword_WithoutLogout_KeepsEveryDevice()
    {
        var current = _accounts.Register("alice", "old", "CURRENT", null, false, null)!;
        var other = _accounts.Login("@alice:test.local", "OTHER", null, null);

        _accounts.SetPassword("@alice:test.local", "new", logoutDevices: false, keepDevice: "CURRENT");

        Assert.True(_accounts.CheckPassword("@alice:test.local", "new"));
        Assert.NotNull(_accounts.ResolveToken(current.AccessToken));
        Assert.NotNull(_accounts.ResolveToken(other.AccessToken));
        Assert.Equal(2, _accounts.Devices("@alice:test.local").Count);
    }

    [Fact]
    public void SetPassword_ForAnUnknownUser_IsNotFound()
    {
        var e = Assert.Throws<MatrixException>(() => _accounts.SetPassword("@ghost:test.local", "x", false, null));
        Assert.Equal("M_NOT_FOUND", e.ErrCode);
        Assert.Equal(404, e.Status);
    }

    [Fact]
    public void CheckPassword_ForAnUnknownUser_IsFalse()
        => Assert.False(_accounts.CheckPassword("@ghost:test.local", "pw"));

    [Fact]
    public void RenameDevice_ChangesTheDisplayName()
    {
        _accounts.Register("alice", "pw", "DEV", "before", false, null);
        Assert.True(_accounts.RenameDevice("@alice:test.local", "DEV", "after"));
        Assert.Equal("after", _accounts.Device("@alice:test.local", "DEV")!.DisplayName);
        Assert.False(_accounts.RenameDevice("@alice:test.local", "NOPE", "x"));
    }
}
