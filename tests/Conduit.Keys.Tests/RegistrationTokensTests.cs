using Conduit.Common;
using Conduit.Common.Storage;
using Conduit.Keys;

namespace Conduit.Keys.Tests;

public sealed class RegistrationTokensTests : IDisposable
{
    readonly IKeyValueStore _kv = KvStore.Open("memory", "", KeysFamilies.All);
    readonly RegistrationTokens _tokens;
    readonly AccountStore _accounts;
    long _now = 1_700_000_000_000;

    public RegistrationTokensTests()
    {
        _tokens = new RegistrationTokens(_kv) { Clock = () => _now };
        _accounts = TestStores.Accounts(_kv);
    }

    public void Dispose() => _kv.Dispose();

    [Fact]
    public void A_token_is_created_read_listed_updated_and_deleted()
    {
        var t = _tokens.Create("abc-DEF_1.~", null, 3, null);
        Assert.Equal(new RegistrationToken("abc-DEF_1.~", 3, 0, 0, null), t);
        Assert.Equal(t, _tokens.Get("abc-DEF_1.~"));
        var random = _tokens.Create(null, 24, null, _now + 1000);
        Assert.Equal(24, random.Token.Length);
        Assert.True(RegistrationTokens.IsValidToken(random.Token));
        Assert.Equal(16, _tokens.Create(null, null, null, null).Token.Length);
        Assert.Equal(3, _tokens.List(null).Count);
        Assert.Equal(3, _tokens.List(true).Count);
        Assert.Empty(_tokens.List(false));

        var changed = _tokens.Update("abc-DEF_1.~", (true, null), (true, _now + 5)) ?? throw new Xunit.Sdk.XunitException("not found");
        Assert.Equal((null, _now + 5), (changed.UsesAllowed, changed.ExpiryTime));
        Assert.Equal((long?)null, _tokens.Update("abc-DEF_1.~", (false, null), (false, null))!.UsesAllowed);
        Assert.Null(_tokens.Update("missing", (true, 1), (false, null)));
        Assert.True(_tokens.Delete("abc-DEF_1.~"));
        Assert.False(_tokens.Delete("abc-DEF_1.~"));
        Assert.Null(_tokens.Get("abc-DEF_1.~"));
    }

    [Fact]
    public void Bad_input_is_refused()
    {
        _tokens.Create("taken", null, null, null);
        foreach (var create in new Action[]
        {
            () => _tokens.Create("taken", null, null, null),
            () => _tokens.Create("has space", null, null, null),
            () => _tokens.Create(new string('a', 65), null, null, null),
            () => _tokens.Create(null, 0, null, null),
            () => _tokens.Create(null, 65, null, null),
            () => _tokens.Create(null, null, -1, null),
            () => _tokens.Create(null, null, null, _now - 1),
            () => _tokens.Update("taken", (true, -2), (false, null)),
        })
            Assert.Equal("M_INVALID_PARAM", Assert.Throws<MatrixException>(create).ErrCode);
        Assert.Single(_tokens.List(null));
    }

    [Fact]
    public void Expiry_makes_a_token_invalid()
    {
        _tokens.Create("soon", null, null, _now + 1000);
        Assert.True(_tokens.IsValid("soon"));
        _now += 1000;
        Assert.False(_tokens.IsValid("soon"));
        Assert.False(_tokens.UseInSession("soon", "s1"));
        Assert.Equal("soon", Assert.Single(_tokens.List(false)).Token);
        Assert.False(_tokens.IsValid("unknown"));
    }

    [Fact]
    public void Pending_uses_count_until_completed_or_an_hour_has_passed()
    {
        _tokens.Create("two", null, 2, null);
        Assert.True(_tokens.UseInSession("two", "s1"));
        Assert.True(_tokens.UseInSession("two", "s1"));   // the same session again: one use
        Assert.Equal(1, _tokens.Get("two")!.Pending);
        Assert.True(_tokens.UseInSession("two", "s2"));
        Assert.False(_tokens.IsValid("two"));
        Assert.False(_tokens.UseInSession("two", "s3"));
        // s1 completes: pending → completed, in the account's batch.
        var login = _tokens.Complete("s1", alongside => _accounts.Register("alice", "pw", null, null, true, null, alongside: alongside));
        Assert.Null(login);
        Assert.True(_accounts.Exists("@alice:test.local"));
        Assert.Equal((1L, 1L), (_tokens.Get("two")!.Pending, _tokens.Get("two")!.Completed));
        // s2 is abandoned: after an hour its use no longer counts.
        _now += RegistrationTokens.PendingLifetimeMs;
        Assert.Equal(0, _tokens.Get("two")!.Pending);
        Assert.True(_tokens.UseInSession("two", "s3"));
        Assert.False(_tokens.UseInSession("two", "s4"));
    }

    [Fact]
    public void A_failed_registration_keeps_its_use_pending_and_a_retry_completes_it()
    {
        _tokens.Create("once", null, 1, null);
        _accounts.Register("taken", "pw", null, null, true, null);
        Assert.True(_tokens.UseInSession("once", "s1"));
        Assert.Throws<MatrixException>(() => _tokens.Complete("s1", alongside => _accounts.Register("taken", "pw", null, null, true, null, alongside: alongside)));
        Assert.Equal((1L, 0L), (_tokens.Get("once")!.Pending, _tokens.Get("once")!.Completed));
        _tokens.Complete("s1", alongside => _accounts.Register("bob", "pw", null, null, true, null, alongside: alongside));
        Assert.Equal((0L, 1L), (_tokens.Get("once")!.Pending, _tokens.Get("once")!.Completed));
        Assert.False(_tokens.IsValid("once"));
        // A session that used no stored token (the config's) completes without touching any.
        _tokens.Complete("other", alongside => { Assert.Null(alongside); return 0; });
    }

    [Fact]
    public void The_first_full_account_is_admin_and_the_flag_can_change()
    {
        _accounts.RegisterGuest(null, null, null);
        _accounts.Register("first", "pw", null, null, true, null);
        _accounts.Register("second", "pw", null, null, true, null);
        Assert.True(_accounts.IsAdmin("@first:test.local"));
        Assert.False(_accounts.IsAdmin("@second:test.local"));
        var login = _accounts.Login("@second:test.local", null, null, null);
        Assert.False(_accounts.Authenticate(login.AccessToken)!.IsAdmin);
        _accounts.SetAdmin("@second:test.local", true);
        Assert.True(_accounts.Authenticate(login.AccessToken)!.IsAdmin);
        _accounts.SetAdmin("@second:test.local", false);
        Assert.False(_accounts.IsAdmin("@second:test.local"));
    }
}
