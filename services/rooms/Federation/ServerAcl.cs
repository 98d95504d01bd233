using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Conduit.Rooms;

/// <summary>
/// Server access control lists (spec: client-server-api, "Server Access Control Lists (ACLs) for rooms";
/// server-server-api, "Server ACLs"): the m.room.server_acl content decides which servers take part in a room. A room
/// without one allows every server. The port is not part of the match; entries are globs (* and ?), matched without
/// regard to case; an IP literal is refused when allow_ip_literals is false; deny wins over allow; a missing allow
/// list allows nothing.
/// </summary>
public static class ServerAcl
{
    public static bool Allows(JsonObject? acl, string serverName)
    {
        if (acl is null) return true;
        var host = HostOf(serverName);
        var ipLiteral = host.StartsWith('[') || IPAddress.TryParse(host, out _);
        if (ipLiteral && acl["allow_ip_literals"] is JsonValue v && v.TryGetValue(out bool allowIp) && !allowIp) return false;
        if (Globs(acl["deny"]).Any(g => Matches(g, host))) return false;
        return Globs(acl["allow"]).Any(g => Matches(g, host));
    }

    static string HostOf(string serverName)
    {
        if (serverName.StartsWith('['))
        {
            var end = serverName.IndexOf(']');
            return end < 0 ? serverName : serverName[..(end + 1)];
        }
        var colon = serverName.LastIndexOf(':');
        return colon < 0 ? serverName : serverName[..colon];
    }

    static IEnumerable<string> Globs(JsonNode? list)
        => list is JsonArray a ? a.OfType<JsonValue>().Select(n => n.TryGetValue(out string? s) ? s : null).OfType<string>() : [];

    static bool Matches(string glob, string host)
        => Regex.IsMatch(host, "^" + Regex.Escape(glob).Replace("\\*", ".*", StringComparison.Ordinal).Replace("\\?", ".", StringComparison.Ordinal) + "$",
            RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Singleline, TimeSpan.FromMilliseconds(100));
}
