using Microsoft.AspNetCore.Http;

namespace Conduit.Common.Http;

/// <summary>
/// The authenticated caller of a client request. The edge resolves the access token once and passes the
/// identity to services as internal headers; services trust them only behind <see cref="InternalGate"/>.
/// <see cref="IsGuest"/>: a guest account (spec: client-server-api, "Guest access"); the edge already refused it
/// every endpoint the spec does not open to guests, so a service only checks the finer rules it owns.
/// <see cref="IsAdmin"/>: a server admin (the config's admins, or the account's admin flag), as the keys service said
/// when the edge resolved the token; a change of the flag drops the edge's cached tokens of the user.
/// </summary>
public sealed record Caller(string UserId, string DeviceId, bool IsGuest = false, bool IsAdmin = false)
{
    /// <summary>The application service whose as_token made the request (as its sender or a user it acts as).</summary>
    public string? AppserviceId { get; init; }

    public const string UserHeader = "X-Conduit-User";
    public const string DeviceHeader = "X-Conduit-Device";
    public const string GuestHeader = "X-Conduit-Guest";
    public const string AdminHeader = "X-Conduit-Admin";
    /// <summary>The id of the application service whose as_token authenticated the request (set by the edge only).</summary>
    public const string AppserviceHeader = "X-Conduit-Appservice";

    /// <summary>Every internal header starts so; the edge drops any a client sends.</summary>
    public const string InternalHeaderPrefix = "X-Conduit-";

    /// <summary>
    /// Set by the keys service on the response of anything that revoked tokens; the edge drops cached tokens before
    /// that response reaches the client, so the revocation has taken effect when the client learns of it. The value
    /// <see cref="RevokedTokenPrefix"/> + an access token names the one token revoked; any other value means all.
    /// </summary>
    public const string RevokedHeader = "X-Conduit-Revoked";
    public const string RevokedTokenPrefix = "token ";

    public static Caller? Optional(HttpContext ctx)
    {
        var u = ctx.Request.Headers[UserHeader].ToString();
        if (string.IsNullOrEmpty(u)) return null;
        var h = ctx.Request.Headers;
        return new Caller(u, h[DeviceHeader].ToString(), h[GuestHeader].ToString() == "1", h[AdminHeader].ToString() == "1") { AppserviceId = AppserviceOf(ctx) };
    }

    /// <summary>The id of the application service whose as_token made the request; null for any other caller.</summary>
    public static string? AppserviceOf(HttpContext ctx)
        => ctx.Request.Headers[AppserviceHeader].ToString() is { Length: > 0 } id ? id : null;

    /// <summary>The caller if a server admin; 403 M_FORBIDDEN "You are not a server admin" otherwise (the admin API).</summary>
    public static Caller Admin(HttpContext ctx)
    {
        var c = Required(ctx);
        if (!c.IsAdmin) throw Err.Forbidden("You are not a server admin");
        return c;
    }

    /// <summary>The caller, or M_MISSING_TOKEN (an invalid token was already refused at the edge).</summary>
    public static Caller Required(HttpContext ctx) => Optional(ctx) ?? throw Err.MissingToken();
}
