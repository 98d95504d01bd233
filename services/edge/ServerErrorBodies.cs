using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Conduit.Common;
using Conduit.Common.Http;
using Microsoft.AspNetCore.Connections;

namespace Conduit.Edge;

/// <summary>
/// Gives Kestrel's own error responses a Matrix error body. A request Kestrel cannot parse (a malformed request
/// line, "%00" in the path, a URL over 8 KiB: 414, headers over 32 KiB: 431, a bad chunk: 400, a header timeout:
/// 408) never reaches the middleware; Kestrel answers it itself with "Content-Length: 0" and closes the connection,
/// and offers no hook to change that body (aspnet/KestrelHttpServer#2947). So this connection middleware watches
/// the bytes the edge writes: a response that starts a flush with a 4xx/5xx status line and is only a header block
/// with "Content-Length: 0", "Connection: close" and no Content-Type is one of Kestrel's (every response of our own
/// carries a JSON body, see <see cref="ErrorMiddleware"/>), and gets the Matrix error JSON for its status.
/// </summary>
public static class ServerErrorBodies
{
    /// <summary>The connection middleware, for <c>ListenOptions.Use</c> on the public (HTTP/1.1) listener.</summary>
    public static ConnectionDelegate Middleware(ConnectionDelegate next) => async connection =>
    {
        var transport = connection.Transport;
        var writer = new Writer(transport.Output);
        connection.Transport = new Duplex(transport.Input, writer);
        try
        {
            await next(connection);
        }
        finally
        {
            connection.Transport = transport;
        }
    };

    /// <summary>The Matrix error for a status Kestrel answers by itself.</summary>
    public static MatrixException ErrorFor(int status) => status switch
    {
        413 => Err.TooLarge(),
        414 => new MatrixException("M_TOO_LARGE", 414, "Request URL too long"),
        431 => new MatrixException("M_TOO_LARGE", 431, "Request headers too large"),
        501 or 505 => Err.Unrecognized(status, "Unsupported HTTP request"),
        408 => new MatrixException("M_UNKNOWN", 408, "Request timed out"),
        _ => new MatrixException("M_UNKNOWN", status, "Malformed HTTP request"),
    };

    sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }

    /// <summary>
    /// Passes everything through, except that the start of each flush is held back until it is clear whether it is
    /// one of Kestrel's bodiless error responses: it is let go as soon as it cannot be (usually at the first bytes),
    /// so responses are not copied or delayed beyond that.
    /// </summary>
    /// <remarks>
    /// Kestrel's header writer keeps writing into the rest of the span it was given after an Advance, without asking
    /// for a new one (a Pipe allows it: the rest of the span is where the next bytes go). So after the held bytes are
    /// let go mid-flush, what is advanced until the next GetMemory was written into the rest of the held buffer, and
    /// is copied on from there.
    /// </remarks>
    sealed class Writer(PipeWriter inner) : PipeWriter
    {
        // Kestrel's error responses are a short header block; anything longer is passed on.
        const int MaxHeld = 4096;
        static readonly byte[] Http11 = "HTTP/1.1 "u8.ToArray();
        ArrayBufferWriter<byte> _held = new(256);
        bool _passThrough;
        // The memory last handed out from _held, how much of it was advanced, and whether, the held bytes having been
        // let go, Kestrel may still be writing into the rest of it.
        Memory<byte> _lastHeld;
        int _lastHeldUsed;
        bool _writingIntoHeld;

        public override Memory<byte> GetMemory(int sizeHint = 0)
        {
            _writingIntoHeld = false;
            if (!_passThrough && _held.WrittenCount == 0 && sizeHint > MaxHeld) _passThrough = true;
            if (_passThrough) return inner.GetMemory(sizeHint);
            _lastHeld = _held.GetMemory(sizeHint);
            _lastHeldUsed = 0;
            return _lastHeld;
        }

        public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

        public override void Advance(int bytes)
        {
            if (_passThrough)
            {
                if (_writingIntoHeld) inner.Write(_lastHeld.Span.Slice(_lastHeldUsed, bytes));
                else inner.Advance(bytes);
                _lastHeldUsed += bytes;
                return;
            }
            _held.Advance(bytes);
            _lastHeldUsed += bytes;
            if (!MayBeServerError(_held.WrittenSpan))
            {
                Release();
                _writingIntoHeld = true;
            }
        }

        public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            if (!_passThrough && _held.WrittenCount > 0)
            {
                if (Rewrite(_held.WrittenSpan) is { } rewritten) inner.Write(rewritten);
                else inner.Write(_held.WrittenSpan);
                _held.ResetWrittenCount();
            }
            // Whatever follows a flush may start a new response; a buffer grown by a long one is not kept.
            _passThrough = false;
            _writingIntoHeld = false;
            _lastHeld = default;
            if (_held.Capacity > 4 * MaxHeld) _held = new ArrayBufferWriter<byte>(256);
            return await inner.FlushAsync(cancellationToken);
        }

        void Release()
        {
            inner.Write(_held.WrittenSpan);
            _held.ResetWrittenCount();
            _passThrough = true;
        }

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null)
        {
            if (_held.WrittenCount > 0) Release();
            inner.Complete(exception);
        }

        public override async ValueTask CompleteAsync(Exception? exception = null)
        {
            if (_held.WrittenCount > 0) Release();
            await inner.CompleteAsync(exception);
        }

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;
        public override long UnflushedBytes => inner.UnflushedBytes + _held.WrittenCount;

        /// <summary>Whether the bytes so far can still be the start of a bodiless 4xx/5xx header block.</summary>
        static bool MayBeServerError(ReadOnlySpan<byte> b)
        {
            if (b.Length > MaxHeld) return false;
            var n = Math.Min(b.Length, Http11.Length);
            if (!b[..n].SequenceEqual(Http11.AsSpan(0, n))) return false;
            if (b.Length > Http11.Length && b[Http11.Length] is not ((byte)'4' or (byte)'5')) return false;
            var end = b.IndexOf("\r\n\r\n"u8);
            // A header block followed by a body is an ordinary response.
            return end < 0 || end + 4 == b.Length;
        }

        /// <summary>The response with a Matrix error body, or null if it is not one of Kestrel's bodiless errors.</summary>
        static byte[]? Rewrite(ReadOnlySpan<byte> b)
        {
            if (!MayBeServerError(b) || b.Length < Http11.Length + 3 || !b.EndsWith("\r\n\r\n"u8)) return null;
            var head = Encoding.ASCII.GetString(b);
            if (!head.Contains("\r\nContent-Length: 0\r\n", StringComparison.OrdinalIgnoreCase)
                || !head.Contains("\r\nConnection: close\r\n", StringComparison.OrdinalIgnoreCase)
                || head.Contains("\r\nContent-Type:", StringComparison.OrdinalIgnoreCase)
                || !int.TryParse(head.AsSpan(Http11.Length, 3), out var status))
                return null;
            var body = Encoding.UTF8.GetBytes(MatrixHttp.ErrorBody(ErrorFor(status)).ToJsonString());
            var at = head.IndexOf("\r\nContent-Length: 0\r\n", StringComparison.OrdinalIgnoreCase);
            var rewritten = head[..at] + $"\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n" + head[(at + "\r\nContent-Length: 0\r\n".Length)..];
            return [.. Encoding.ASCII.GetBytes(rewritten), .. body];
        }
    }
}
