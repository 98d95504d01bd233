using System.Collections;
using Conduit.Common.Config;
using Conduit.Common.Events;

namespace Conduit.Common.Tests;

public sealed class DefaultRoomVersionConfigTests
{
    static LoadedConfig Parse(string version) => ConfigLoader.Parse($"""
        [global]
        server_name = "example.org"
        default_room_version = "{version}"
        """, "test.toml", new Hashtable());

    public static TheoryData<string> Versions()
    {
        var data = new TheoryData<string>();
        foreach (var v in RoomVersion.All) data.Add(v.Id);
        return data;
    }

    [Theory, MemberData(nameof(Versions))]
    public void Every_room_version_may_be_the_default(string id) => Assert.Equal(id, Parse(id).Global.DefaultRoomVersion);

    [Theory]
    [InlineData("13")]
    [InlineData("org.example.custom")]
    [InlineData("")]
    public void Unknown_room_versions_are_refused(string id)
    {
        var e = Assert.Throws<ConfigException>(() => Parse(id));
        Assert.Contains("default_room_version", e.Message);
    }
}
