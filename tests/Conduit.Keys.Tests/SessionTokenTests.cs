using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Storage;

namespace Conduit.Keys.Tests;

/// <summary>
/// Refresh tokens and expiring access tokens (spec: client-server-api, "Refreshing access tokens"), and guest
/// accounts (spec: "Guest access"), on the account store with a clock the tests move.
/// </summary>
public sealed class SessionTokenTests : IDisposable
{
    const string Alice = "@alice:test.local";
    const long Lifetime = 60_000;
    readonly IKeyValueStore _kv = KvStore.Open("memory", "", KeysFamilies.All);
    readonly AccountStore _accounts;
    long _now = 1_700_000_000_000;

    public SessionTokenTests()
    {
        _accounts = TestStores.Accounts(_kv, new GlobalConfig { ServerName = "test.local", RefreshableAccessTokenLifetimeMs = Lifetime });
        _accounts.Clock = () => _now;
        _accounts.Register("alice", "pw", null, null, inhibitLogin: true, ip: null);
    }

    public void Dispose() => _kv.Dispose();

    LoginResult RefreshableLogin(string? device = "PHONE") => _accounts.Login(Alice, device, null, "10.0.0.1", "TestAgent/1", refreshable: true);

    static void IsUnknownToken(Action a)
    {
        var e = Assert.Throws<MatrixException>(a);
        Assert.Equal(("M_UNKNOWN_TOKEN", 401), (e.ErrCode, e.Status));
    }

    [Fact]
    public void A_client_that_asks_gets_a_refresh_token_and_an_access_token_that_expires()
    {
        var login = RefreshableLogin();
        Assert.StartsWith("syr_", login.RefreshToken);
        Assert.Equal(Lifetime, login.ExpiresInMs);
        // Alice is the store's first account, so an admin.
        Assert.Equal(new TokenInfo(Alice, "PHONE", false, _now + Lifetime, false, IsAdmin: true), _accounts.Authenticate(login.AccessToken));

        _now += Lifetime - 1;
        Assert.Equal((Alice, "PHONE"), _accounts.ResolveToken(login.AccessToken));
        _now += 1;
        // Expired, yet still naming its session (so the edge can answer soft_logout and let /logout through).
        Assert.Equal(new TokenInfo(Alice, "PHONE", false, _now, true, IsAdmin: true), _accounts.Authenticate(login.AccessToken));
        Assert.Null(_accounts.ResolveToken(login.AccessToken));
    }

    [Fact]
    public void A_client_that_does_not_ask_keeps_a_token_that_never_expires()
    {
        var login = _accounts.Login(Alice, "LAPTOP", null, null);
        Assert.Null(login.RefreshToken);
        Assert.Null(login.ExpiresInMs);
        _now += 100 * 365L * 24 * 3600 * 1000;
        Assert.Equal(new TokenInfo(Alice, "LAPTOP", false, 0, false, IsAdmin: true), _accounts.Authenticate(login.AccessToken));
    }

    [Fact]
    public void Refresh_replaces_both_tokens_and_revokes_the_old_access_token_at_once()
    {
        var login = RefreshableLogin();
        _now += Lifetime + 5;
        var (next, revoked) = _accounts.Refresh(login.RefreshToken!, new SessionOrigin("10.0.0.2", "TestAgent/2"));
        Assert.Equal(login.AccessToken, revoked);
        Assert.Equal((Alice, "PHONE"), (next.UserId, next.DeviceId));
        Assert.NotEqual(login.RefreshToken, next.RefreshToken);
        Assert.Equal(Lifetime, next.ExpiresInMs);
        Assert.Null(_accounts.Authenticate(login.AccessToken));
        Assert.Equal(_now + Lifetime, _accounts.Authenticate(next.AccessToken)!.ExpiresTs);
        // The device records where the refresh came from.
        var d = _accounts.Device(Alice, "PHONE")!;
        Assert.Equal(("10.0.0.2", "TestAgent/2", _now), (d.LastSeenIp, d.UserAgent, d.LastSeenTs));
    }

    [Fact]
    public void The_old_refresh_token_works_until_the_new_access_token_is_used()
    {
        var login = RefreshableLogin();
        var (lost, _) = _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null));
        // The client never got that answer: it refreshes again with the token it has, and the lost tokens go.
        var (retry, _) = _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null));
        Assert.Null(_accounts.Authenticate(lost.AccessToken));
        IsUnknownToken(() => _accounts.Refresh(lost.RefreshToken!, new SessionOrigin(null)));

        // Using the new access token ends the old refresh token.
        Assert.NotNull(_accounts.ResolveToken(retry.AccessToken));
        IsUnknownToken(() => _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null)));
        // The session goes on with the new refresh token.
        var (third, _) = _accounts.Refresh(retry.RefreshToken!, new SessionOrigin(null));
        Assert.NotNull(_accounts.ResolveToken(third.AccessToken));
    }

    [Fact]
    public void Using_the_new_refresh_token_also_ends_the_old_one()
    {
        var login = RefreshableLogin();
        var (second, _) = _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null));
        var (third, _) = _accounts.Refresh(second.RefreshToken!, new SessionOrigin(null));
        IsUnknownToken(() => _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null)));
        Assert.Null(_accounts.Authenticate(second.AccessToken));
        // second's refresh token is now the one kept for a retry.
        var (again, _) = _accounts.Refresh(second.RefreshToken!, new SessionOrigin(null));
        Assert.Null(_accounts.Authenticate(third.AccessToken));
        Assert.NotNull(_accounts.ResolveToken(again.AccessToken));
    }

    [Fact]
    public void Unknown_refresh_tokens_and_those_of_deleted_devices_are_unknown_tokens()
    {
        IsUnknownToken(() => _accounts.Refresh("syr_made_up", new SessionOrigin(null)));
        var login = RefreshableLogin();
        var (next, _) = _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null));
        _accounts.DeleteDevices(Alice, ["PHONE"]);
        IsUnknownToken(() => _accounts.Refresh(next.RefreshToken!, new SessionOrigin(null)));
        IsUnknownToken(() => _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null)));
        Assert.Empty(_kv.Map(KeysFamilies.RefreshTokens).Scan([]));
    }

    [Fact]
    public void Logging_in_again_on_the_device_ends_its_refresh_tokens()
    {
        var login = RefreshableLogin();
        var (next, _) = _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null));
        var again = _accounts.Login(Alice, "PHONE", null, null);
        IsUnknownToken(() => _accounts.Refresh(next.RefreshToken!, new SessionOrigin(null)));
        IsUnknownToken(() => _accounts.Refresh(login.RefreshToken!, new SessionOrigin(null)));
        Assert.Equal(0, _accounts.Authenticate(again.AccessToken)!.ExpiresTs);
        Assert.Empty(_kv.Map(KeysFamilies.RefreshTokens).Scan([]));
    }

    [Fact]
    public void Refresh_tokens_survive_a_restart()
    {
        var dir = Directory.CreateTempSubdirectory("conduit-keys-test-").FullName;
        try
        {
            string refresh;
            using (var kv = KvStore.Open("sqlite", dir, KeysFamilies.All))
            {
                var a = TestStores.Accounts(kv);
                a.Register("bob", "pw", null, null, inhibitLogin: true, ip: null);
                refresh = a.Login("@bob:test.local", "D", null, null, refreshable: true).RefreshToken!;
            }
            using (var kv = KvStore.Open("sqlite", dir, KeysFamilies.All))
            {
                var (next, _) = TestStores.Accounts(kv).Refresh(refresh, new SessionOrigin(null));
                Assert.Equal(("@bob:test.local", "D"), (next.UserId, next.DeviceId));
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    // ---- guests

    [Fact]
    public void A_guest_account_has_no_password_and_says_it_is_a_guest()
    {
        var guest = _accounts.RegisterGuest("Guest phone", "10.0.0.9", null);
        Assert.True(_accounts.IsGuest(guest.UserId));
        Assert.False(_accounts.IsGuest(Alice));
        Assert.Equal(new TokenInfo(guest.UserId, guest.DeviceId, true, 0, false), _accounts.Authenticate(guest.AccessToken));
        Assert.Equal("Guest phone", _accounts.Device(guest.UserId, guest.DeviceId)!.DisplayName);
        Assert.False(_accounts.CheckPassword(guest.UserId, ""));
        Assert.NotEqual(guest.UserId, _accounts.RegisterGuest(null, null, null).UserId);
    }

    [Fact]
    public async Task An_upgraded_guest_keeps_its_id_and_devices_and_gets_a_password()
    {
        var guest = _accounts.RegisterGuest(null, null, null);
        var localpart = guest.UserId[1..guest.UserId.IndexOf(':')];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var watch = _accounts.WatchRevocations(cts.Token).GetAsyncEnumerator(cts.Token);
        var next = watch.MoveNextAsync();

        var (userId, login) = _accounts.UpgradeGuest(guest.AccessToken, localpart.ToUpperInvariant(), "secret", "NEWDEV", null, inhibitLogin: false, new SessionOrigin(null));

        Assert.Equal(guest.UserId, userId);
        Assert.Equal((guest.UserId, "NEWDEV"), (login!.UserId, login.DeviceId));
        Assert.False(_accounts.IsGuest(userId));
        Assert.True(_accounts.CheckPassword(userId, "secret"));
        // The guest's token goes on, as a full account's: the edge hears to drop what it cached.
        Assert.Equal(new TokenInfo(userId, guest.DeviceId, false, 0, false), _accounts.Authenticate(guest.AccessToken));
        Assert.True(await next);
        Assert.Equal(guest.AccessToken, watch.Current);
        Assert.Equal(2, _accounts.Devices(userId).Count);
    }

    [Fact]
    public void Only_a_guest_upgrades_and_only_to_its_own_localpart()
    {
        var guest = _accounts.RegisterGuest(null, null, null);
        var e = Assert.Throws<MatrixException>(() => _accounts.UpgradeGuest(guest.AccessToken, "someone_else", "pw", null, null, true, new SessionOrigin(null)));
        Assert.Equal(("M_INVALID_USERNAME", 400), (e.ErrCode, e.Status));
        Assert.True(_accounts.IsGuest(guest.UserId));

        var full = _accounts.Login(Alice, null, null, null);
        e = Assert.Throws<MatrixException>(() => _accounts.UpgradeGuest(full.AccessToken, null, "pw", null, null, true, new SessionOrigin(null)));
        Assert.Equal(("M_FORBIDDEN", 403), (e.ErrCode, e.Status));
        Assert.True(_accounts.CheckPassword(Alice, "pw"));

        IsUnknownToken(() => _accounts.UpgradeGuest("syt_made_up", null, "pw", null, null, true, new SessionOrigin(null)));
    }
}
