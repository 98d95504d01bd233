using Microsoft.AspNetCore.Http;

namespace Conduit.Common.Http;

/// <summary>
/// The authenticated caller of a client request. The edge resolves the access token once and passes the
/// identity to services as internal headers; services trust them only behind <see cref="InternalGate"/>.
/// </summary>
public sealed record Caller(string UserId, string DeviceId)
{
    public const string UserHeader = "X-Conduit-User";
    public const string DeviceHeader = "X-Conduit-Device";

    public static Caller? Optional(HttpContext ctx)
    {
        var u = ctx.Request.Headers[UserHeader].ToString();
        if (string.IsNullOrEmpty(u)) return null;
        return new Caller(u, ctx.Request.Headers[DeviceHeader].ToString());
    }

    /// <summary>The caller, or M_MISSING_TOKEN (an invalid token was already refused at the edge).</summary>
    public static Caller Required(HttpContext ctx) => Optional(ctx) ?? throw Err.MissingToken();
}
