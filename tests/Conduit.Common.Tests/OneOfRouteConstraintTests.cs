using Conduit.Common.Routing;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Common.Tests;

public class OneOfRouteConstraintTests
{
    static bool Match(OneOfRouteConstraint c, object? value) =>
        c.Match(null, null, "action", new RouteValueDictionary { ["action"] = value }, RouteDirection.IncomingRequest);

    [Fact]
    public void Matches_exactly_the_listed_words()
    {
        var c = new OneOfRouteConstraint("join|invite|leave");
        Assert.True(Match(c, "join"));
        Assert.True(Match(c, "leave"));
        // Matrix paths are case-sensitive; no prefix, suffix or empty match.
        Assert.False(Match(c, "JOIN"));
        Assert.False(Match(c, "joined"));
        Assert.False(Match(c, "oin"));
        Assert.False(Match(c, ""));
        Assert.False(Match(c, null));
        Assert.False(c.Match(null, null, "action", new RouteValueDictionary(), RouteDirection.IncomingRequest));
        Assert.True(c.MatchesLiteral("action", "invite"));
        Assert.False(c.MatchesLiteral("action", "ban"));
    }

    [Fact]
    public void Refuses_an_empty_word()
    {
        Assert.Throws<ArgumentException>(() => new OneOfRouteConstraint("a||b"));
        Assert.Throws<ArgumentException>(() => new OneOfRouteConstraint(""));
    }
}
