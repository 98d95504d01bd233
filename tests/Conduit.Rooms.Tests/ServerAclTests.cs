using System.Text.Json.Nodes;

namespace Conduit.Rooms.Tests;

/// <summary>m.room.server_acl as the spec defines it: globs on the host without port, deny before allow, IP literals.</summary>
public sealed class ServerAclTests
{
    static JsonObject Acl(string[] allow, string[] deny, bool? ipLiterals = null)
    {
        var o = new JsonObject
        {
            ["allow"] = new JsonArray(allow.Select(a => (JsonNode)a).ToArray()),
            ["deny"] = new JsonArray(deny.Select(d => (JsonNode)d).ToArray()),
        };
        if (ipLiterals is { } b) o["allow_ip_literals"] = b;
        return o;
    }

    [Theory]
    [InlineData("matrix.org", true)]
    [InlineData("evil.example", false)]
    [InlineData("sub.evil.example", false)]
    [InlineData("EVIL.example:8448", false)]
    [InlineData("evil.example.org", true)]
    [InlineData("x.bad?", true)]
    [InlineData("badx", false)]
    public void Deny_globs_match_the_host_without_port_and_case(string server, bool allowed)
        => Assert.Equal(allowed, ServerAcl.Allows(Acl(["*"], ["evil.example", "*.evil.example", "bad?"]), server));

    [Fact]
    public void No_acl_allows_everyone_and_an_acl_without_allow_allows_no_one()
    {
        Assert.True(ServerAcl.Allows(null, "anything.example"));
        Assert.False(ServerAcl.Allows(new JsonObject { ["deny"] = new JsonArray() }, "anything.example"));
        Assert.True(ServerAcl.Allows(Acl(["*.example"], []), "a.example:1234"));
        Assert.False(ServerAcl.Allows(Acl(["*.example"], []), "a.example.org"));
    }

    [Theory]
    [InlineData("1.2.3.4", true, true)]
    [InlineData("1.2.3.4:8448", false, false)]
    [InlineData("[::1]:8448", false, false)]
    [InlineData("[::1]", true, true)]
    [InlineData("host.example", false, true)]
    public void Ip_literals_follow_allow_ip_literals(string server, bool ipLiterals, bool allowed)
        => Assert.Equal(allowed, ServerAcl.Allows(Acl(["*"], [], ipLiterals), server));
}
