using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Conduit.Common.Http;

/// <summary>Reading Matrix request bodies and writing Matrix responses; the one place errors become JSON.</summary>
public static class MatrixHttp
{
    /// <summary>Reads the body as a JSON object with the strict rules of <see cref="RequestJson"/>: M_NOT_JSON if it is
    /// not usable JSON, M_BAD_JSON if not an object, M_TOO_LARGE past the configured request size. An empty body
    /// counts as {} (clients send none on some POSTs).</summary>
    public static async Task<JsonObject> ReadJsonObjectAsync(this HttpRequest request)
    {
        byte[] body;
        try
        {
            using var ms = new MemoryStream();
            await request.Body.CopyToAsync(ms, request.HttpContext.RequestAborted);
            body = ms.ToArray();
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw Err.TooLarge();
        }
        if (body.Length == 0 || body.AsSpan().Trim(" \t\r\n"u8).IsEmpty) return new JsonObject();
        return RequestJson.ParseObject(body);
    }

    public static async Task WriteJsonAsync(this HttpResponse response, JsonNode body, int status = 200)
    {
        await DrainRequestBodyAsync(response.HttpContext);
        response.StatusCode = status;
        response.ContentType = "application/json";
        var bytes = Encoding.UTF8.GetBytes(body.ToJsonString());
        response.ContentLength = bytes.Length;
        await response.Body.WriteAsync(bytes, response.HttpContext.RequestAborted);
    }

    /// <summary>
    /// Reads what is left of the request body before a response goes out (an error answered before the body was
    /// read, a body the endpoint ignores). In split mode a service that answers without reading the body resets its
    /// HTTP/2 stream, and the edge's proxy may then cut the client's connection instead of passing the answer on
    /// (dotnet/yarp#1501): the client would see a transport error, not the Matrix error. Bodies are bounded by
    /// max_request_size, so this reads at most that much; if reading fails the response is written all the same.
    /// </summary>
    static async Task DrainRequestBodyAsync(HttpContext ctx)
    {
        if (ctx.Request.ContentLength == 0 || HttpMethods.IsGet(ctx.Request.Method) && ctx.Request.ContentLength is null && !ctx.Request.Headers.ContainsKey("Transfer-Encoding")) return;
        try
        {
            await ctx.Request.Body.CopyToAsync(Stream.Null, ctx.RequestAborted);
        }
        catch (Exception e) when (e is BadHttpRequestException or IOException or OperationCanceledException or InvalidOperationException)
        {
            // Too large, aborted or already gone: the answer is what matters.
        }
    }

    public static JsonObject ErrorBody(MatrixException e)
    {
        // A user-interactive-auth challenge is a 401 whose body is only flows/params/session (no errcode).
        var o = e.ErrCode.Length == 0 ? new JsonObject() : new JsonObject { ["errcode"] = e.ErrCode, ["error"] = e.Message };
        if (e.Extra is not null)
            foreach (var (k, v) in e.Extra) o[k] = v?.DeepClone();
        return o;
    }

    public static Task WriteErrorAsync(this HttpResponse response, MatrixException e)
        => response.WriteJsonAsync(ErrorBody(e), e.Status);

    // ---- typed access to JSON request fields: wrong types are M_BAD_JSON, absent required ones M_MISSING_PARAM.

    public static string? OptString(this JsonObject o, string key)
    {
        if (!o.TryGetPropertyValue(key, out var n) || n is null) return null;
        if (n is JsonValue v && v.TryGetValue<string>(out var s)) return s;
        throw Err.BadJson($"'{key}' must be a string");
    }

    public static string ReqString(this JsonObject o, string key)
        => o.OptString(key) ?? throw Err.MissingParam($"Missing '{key}'");

    public static bool? OptBool(this JsonObject o, string key)
    {
        if (!o.TryGetPropertyValue(key, out var n) || n is null) return null;
        if (n is JsonValue v && v.TryGetValue<bool>(out var b)) return b;
        throw Err.BadJson($"'{key}' must be a boolean");
    }

    public static long? OptLong(this JsonObject o, string key)
    {
        if (!o.TryGetPropertyValue(key, out var n) || n is null) return null;
        if (n.TryGetInteger(out var l)) return l;
        throw Err.BadJson($"'{key}' must be an integer");
    }

    public static JsonObject? OptObject(this JsonObject o, string key)
    {
        if (!o.TryGetPropertyValue(key, out var n) || n is null) return null;
        return n as JsonObject ?? throw Err.BadJson($"'{key}' must be an object");
    }

    public static JsonArray? OptArray(this JsonObject o, string key)
    {
        if (!o.TryGetPropertyValue(key, out var n) || n is null) return null;
        return n as JsonArray ?? throw Err.BadJson($"'{key}' must be an array");
    }

    /// <summary>A list of strings: M_BAD_JSON if it is not an array or has an entry that is not a string.</summary>
    public static List<string>? OptStringList(this JsonObject o, string key)
    {
        if (o.OptArray(key) is not { } a) return null;
        var list = new List<string>(a.Count);
        foreach (var n in a)
            list.Add(n is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Err.BadJson($"'{key}' must be an array of strings"));
        return list;
    }

    /// <summary>A list of objects: M_BAD_JSON if it is not an array or has an entry that is not an object.</summary>
    public static List<JsonObject>? OptObjectList(this JsonObject o, string key)
    {
        if (o.OptArray(key) is not { } a) return null;
        return a.Select(n => n as JsonObject ?? throw Err.BadJson($"'{key}' must be an array of objects")).ToList();
    }

    public static string? Query(this HttpRequest r, string key)
        => r.Query.TryGetValue(key, out var v) && v.Count > 0 ? v[0] : null;

    /// <summary>An integer query parameter between <paramref name="min"/> and <paramref name="max"/>; 400 M_INVALID_PARAM otherwise.</summary>
    public static long QueryLong(this HttpRequest r, string key, long fallback, long min = 0, long max = long.MaxValue)
    {
        if (r.Query(key) is not { } s) return fallback;
        return long.TryParse(s, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n : throw Err.InvalidParam($"'{key}' must be an integer from {min} to {max}");
    }

    /// <summary>A query parameter "true" or "false", or null when absent; 400 M_INVALID_PARAM otherwise.</summary>
    public static bool? QueryBool(this HttpRequest r, string key) => r.Query(key) switch
    {
        null => null,
        "true" => true,
        "false" => false,
        _ => throw Err.InvalidParam($"'{key}' must be true or false"),
    };

    /// <summary>The "dir" query parameter: f (forwards, the default unless <paramref name="fallback"/> says otherwise) is
    /// true, b false; 400 M_INVALID_PARAM otherwise.</summary>
    public static bool QueryForwards(this HttpRequest r, bool fallback = true) => r.Query("dir") switch
    {
        null => fallback,
        "f" => true,
        "b" => false,
        _ => throw Err.InvalidParam("'dir' must be f or b"),
    };

    /// <summary>A route value, with an encoded '/' (which Kestrel leaves encoded in the path) decoded.</summary>
    public static string Route(this HttpContext ctx, string key)
    {
        var v = ctx.Request.RouteValues.TryGetValue(key, out var o) ? o?.ToString() ?? "" : "";
        return v.Contains('%') ? Uri.UnescapeDataString(v) : v;
    }
}
