using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Edge;

/// <summary>
/// The control socket: a Unix domain socket at database_path/conduit.sock in each process that has a database, through
/// which the command line reaches the running server (<c>conduit backup</c>). Only the server's own user may connect:
/// the socket is made mode 0600 once bound (and before that the umask leaves others without the write permission a
/// connection needs). It answers its own commands only, never a Matrix path: HTTP/1.1 <c>POST /backup</c> with
/// optional JSON {"dir"} → {"path"}, and <c>GET /health</c> → {"status": "ok"} (conduit healthcheck). A stale socket file (a server that was killed) is removed before binding: the
/// database lock, taken first, proves no other server uses this folder.
/// </summary>
public static class ControlSocket
{
    public const string FileName = "conduit.sock";
    const string Marker = "conduit.control";
    /// <summary>sun_path holds 108 bytes; a longer path gets no socket (the server still starts, and says so).</summary>
    const int MaxPathBytes = 100;

    /// <summary>The socket's path for a database folder, or null when it would be too long for a Unix socket.</summary>
    public static string? PathFor(string databasePath)
    {
        var p = Path.GetFullPath(Path.Combine(databasePath, FileName));
        return Encoding.UTF8.GetByteCount(p) <= MaxPathBytes ? p : null;
    }

    public static void Listen(KestrelServerOptions k, string socketPath)
    {
        if (File.Exists(socketPath)) File.Delete(socketPath);
        k.ListenUnixSocket(socketPath, l =>
        {
            l.Protocols = HttpProtocols.Http1;
            // Marks the connection, so the pipeline tells control requests from the public and internal listeners'.
            l.Use(next => connection =>
            {
                connection.Items[Marker] = true;
                return next(connection);
            });
        });
    }

    /// <summary>Restricts the bound socket to the server's user.</summary>
    public static void Protect(string socketPath)
    {
        if (!OperatingSystem.IsWindows() && File.Exists(socketPath)) File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    /// <summary>First in the pipeline: requests that came in on the socket are control commands and go no further.</summary>
    public static async Task Middleware(HttpContext ctx, Func<Task> next)
    {
        if (ctx.Features.Get<IConnectionItemsFeature>()?.Items.ContainsKey(Marker) != true)
        {
            await next();
            return;
        }
        if (ctx.Request.Method == HttpMethods.Get && ctx.Request.Path == "/health")
        {
            await Answer(ctx, 200, new JsonObject { ["status"] = "ok" });
            return;
        }
        if (ctx.Request.Method != HttpMethods.Post || ctx.Request.Path != "/backup")
        {
            await Answer(ctx, 404, new JsonObject { ["error"] = "Unknown command: the control socket knows POST /backup and GET /health" });
            return;
        }
        string? dir = null;
        try
        {
            if (await JsonNode.ParseAsync(ctx.Request.Body, cancellationToken: ctx.RequestAborted) is JsonObject o && o["dir"] is JsonValue v && v.TryGetValue(out string? d)) dir = d;
        }
        catch (System.Text.Json.JsonException) { }
        try
        {
            var path = await ctx.RequestServices.GetRequiredService<Backups>().CreateAsync(dir, ctx.RequestAborted);
            await Answer(ctx, 200, new JsonObject { ["path"] = path });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            await Answer(ctx, 500, new JsonObject { ["error"] = e.Message });
        }
    }

    static Task Answer(HttpContext ctx, int status, JsonObject body)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(body.ToJsonString());
    }

    /// <summary>The command line's side: POSTs a command to a running server's socket; the status and JSON answer.</summary>
    public static async Task<(int Status, JsonObject? Body)> CallAsync(string socketPath, string command, JsonObject? body, CancellationToken ct)
    {
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, token) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), token);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        using var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        using var response = body is null ? await http.GetAsync("http://conduit" + command, ct)
            : await http.PostAsync("http://conduit" + command, new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        JsonObject? answer = null;
        try { answer = JsonNode.Parse(text) as JsonObject; } catch (System.Text.Json.JsonException) { }
        return ((int)response.StatusCode, answer);
    }
}
