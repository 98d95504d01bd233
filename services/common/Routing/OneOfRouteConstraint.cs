using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Matching;

namespace Conduit.Common.Routing;

/// <summary>
/// The route constraint <c>{name:oneof(a|b|c)}</c>: the segment is exactly one of the listed words (ordinal, as Matrix
/// paths are case-sensitive). It replaces ASP.NET Core's <c>regex(^(a|b|c)$)</c> for the route table's few action
/// segments, which built a regular expression per constraint at start and ran it per request; as a literal-matching
/// policy it also lets the router's DFA rule the segment out without running anything.
/// </summary>
public sealed class OneOfRouteConstraint : IRouteConstraint, IParameterLiteralNodeMatchingPolicy
{
    public const string Name = "oneof";

    readonly HashSet<string> _words;

    public OneOfRouteConstraint(string words)
    {
        ArgumentException.ThrowIfNullOrEmpty(words);
        _words = new HashSet<string>(words.Split('|'), StringComparer.Ordinal);
        if (_words.Contains("")) throw new ArgumentException($"Empty word in the route constraint {Name}({words}).", nameof(words));
    }

    public bool Match(HttpContext? httpContext, IRouter? route, string routeKey, RouteValueDictionary values, RouteDirection routeDirection) =>
        values.TryGetValue(routeKey, out var value) && value is string s && _words.Contains(s);

    public bool MatchesLiteral(string parameterName, string literal) => _words.Contains(literal);
}
