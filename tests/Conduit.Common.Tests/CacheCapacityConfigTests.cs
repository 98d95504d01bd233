using System.Collections;
using Conduit.Common.Config;
using Conduit.Common.Storage;

namespace Conduit.Common.Tests;

/// <summary>global.cache_capacity: bytes, as in Conduit's example config (cache_capacity = 1073741824).</summary>
public sealed class CacheCapacityConfigTests
{
    static LoadedConfig Parse(string value, IDictionary? env = null) => ConfigLoader.Parse($"""
        [global]
        server_name = "example.org"
        cache_capacity = {value}
        """, "conduit.toml", env ?? new Hashtable());

    [Theory]
    [InlineData("1073741824", 1073741824L)]
    [InlineData("1_073_741_824", 1073741824L)]
    [InlineData("1048576", 1048576L)]
    [InlineData("17179869184", 17179869184L)]
    public void Bytes_parse_with_or_without_separators(string value, long expected)
    {
        var c = Parse(value);
        Assert.Equal(expected, c.Global.CacheCapacity);
        Assert.Empty(c.Warnings);
    }

    [Fact]
    public void Unset_means_the_small_default()
    {
        var c = ConfigLoader.Parse("[global]\nserver_name = \"example.org\"\n", "conduit.toml", new Hashtable());
        Assert.Equal(StoreOptions.DefaultCacheCapacity, c.Global.CacheCapacity);
        Assert.Equal(8L << 20, c.Global.CacheCapacity);
    }

    [Fact]
    public void The_environment_overrides_it() =>
        Assert.Equal(268435456L, Parse("1073741824", new Hashtable { ["CONDUIT_CACHE_CAPACITY"] = "268435456" }).Global.CacheCapacity);

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("1048575")]
    public void Too_small_is_refused_naming_the_key_and_unit(string value)
    {
        var e = Assert.Throws<ConfigException>(() => Parse(value));
        Assert.Contains("conduit.toml", e.Message);
        Assert.Contains("global.cache_capacity", e.Message);
        Assert.Contains("bytes", e.Message);
    }

    [Theory]
    [InlineData("\"1GB\"")]
    [InlineData("1.5")]
    public void Not_an_integer_is_refused_naming_the_line_and_key(string value)
    {
        var e = Assert.Throws<ConfigException>(() => Parse(value));
        Assert.Contains("line 3", e.Message);
        Assert.Contains("cache_capacity", e.Message);
    }
}
