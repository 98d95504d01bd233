namespace Conduit.Common.Http;

/// <summary>Matrix errcodes and factory helpers (spec: client-server-api, "Standard error response").</summary>
public static class Err
{
    public static MatrixException Forbidden(string msg) => new("M_FORBIDDEN", 403, msg);
    public static MatrixException UnknownToken(string msg = "Unknown access token") => new("M_UNKNOWN_TOKEN", 401, msg);
    /// <summary>An access token that expired (spec: "Soft logout"): the client may refresh it or log in again on the
    /// same device, keeping what it stored.</summary>
    public static MatrixException SoftLogout(string msg = "Access token has expired")
        => new("M_UNKNOWN_TOKEN", 401, msg) { Extra = new() { ["soft_logout"] = true } };
    public static MatrixException GuestAccessForbidden(string msg = "Guest accounts may not use this endpoint")
        => new("M_GUEST_ACCESS_FORBIDDEN", 403, msg);
    public static MatrixException MissingToken() => new("M_MISSING_TOKEN", 401, "Missing access token");
    /// <summary>A user ID or alias in an application service's exclusive namespace, or outside the calling one's.</summary>
    public static MatrixException Exclusive(string msg) => new("M_EXCLUSIVE", 400, msg);
    public static MatrixException BadJson(string msg) => new("M_BAD_JSON", 400, msg);
    public static MatrixException NotJson(string msg = "Request body is not valid JSON") => new("M_NOT_JSON", 400, msg);
    public static MatrixException NotFound(string msg) => new("M_NOT_FOUND", 404, msg);
    public static MatrixException MissingParam(string msg) => new("M_MISSING_PARAM", 400, msg);
    public static MatrixException InvalidParam(string msg) => new("M_INVALID_PARAM", 400, msg);
    public static MatrixException TooLarge(string msg = "Request body too large") => new("M_TOO_LARGE", 413, msg);
    public static MatrixException LimitExceeded(string msg, long retryAfterMs)
        => new("M_LIMIT_EXCEEDED", 429, msg) { Extra = new() { ["retry_after_ms"] = retryAfterMs } };
    public static MatrixException Unrecognized(int status = 404, string msg = "Unrecognized request")
        => new("M_UNRECOGNIZED", status, msg);
    public static MatrixException UserInUse(string msg = "User ID already taken") => new("M_USER_IN_USE", 400, msg);
    public static MatrixException InvalidUsername(string msg) => new("M_INVALID_USERNAME", 400, msg);
    public static MatrixException Unknown(string msg) => new("M_UNKNOWN", 400, msg);
    public static MatrixException RoomInUse(string msg = "Room alias already taken") => new("M_ROOM_IN_USE", 400, msg);
    public static MatrixException UnsupportedRoomVersion(string msg) => new("M_UNSUPPORTED_ROOM_VERSION", 400, msg);
    public static MatrixException UserDeactivated() => new("M_USER_DEACTIVATED", 403, "This account has been deactivated");
}
