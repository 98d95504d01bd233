using System.Collections;
using Conduit.Common.Config;

namespace Conduit.Common.Tests;

/// <summary>The account keys of [global]: guest registration, the refreshable access token lifetime, admins.</summary>
public sealed class AccountConfigTests
{
    static GlobalConfig Parse(string lines, IDictionary? env = null) => ConfigLoader.Parse($"""
        [global]
        server_name = "example.org"
        {lines}
        """, "test.toml", env ?? new Hashtable()).Global;

    [Fact]
    public void The_defaults_are_synapses_and_nobody_is_an_admin()
    {
        var g = Parse("");
        Assert.False(g.AllowGuestRegistration);
        Assert.Equal(300_000, g.RefreshableAccessTokenLifetimeMs);
        Assert.Empty(g.Admins);
    }

    [Fact]
    public void The_keys_are_read_from_the_file_and_the_environment()
    {
        var g = Parse("admins = [\"@root:example.org\"]\nrefreshable_access_token_lifetime_ms = 60_000",
            new Hashtable { ["CONDUIT_ALLOW_GUEST_REGISTRATION"] = "true" });
        Assert.True(g.AllowGuestRegistration);
        Assert.Equal(60_000, g.RefreshableAccessTokenLifetimeMs);
        Assert.Equal(["@root:example.org"], g.Admins);
    }

    [Theory]
    [InlineData("admins = [\"root\"]", "global.admins")]
    [InlineData("admins = [\"@root:elsewhere.org\"]", "global.admins")]
    [InlineData("refreshable_access_token_lifetime_ms = 0", "global.refreshable_access_token_lifetime_ms")]
    public void Bad_values_stop_the_server_naming_the_key(string line, string key)
        => Assert.Contains(key, Assert.Throws<ConfigException>(() => Parse(line)).Message);
}
