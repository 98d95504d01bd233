using Conduit.Common.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Conduit.Edge;

/// <summary>
/// max_request_size counts the bytes of the body a client sends, however it is framed. Kestrel's own limit counts a
/// chunked body's framing too (each chunk's size line and CRLFs go through MessageBody.AddAndCheckObservedBytes), so
/// a chunked body just under max_request_size was refused with 413. For a body without Content-Length the edge
/// therefore raises Kestrel's limit to leave room for framing and counts the decoded bytes itself.
/// </summary>
public static class RequestBodyLimit
{

    /// <summary>
    /// Kestrel's limit for a chunked body: the decoded bytes plus as much again (and 64 KiB) for the framing, which
    /// covers chunks of 8 bytes or more ("8\r\n" + data + "\r\n" is 13 bytes for 8); nobody sends smaller ones.
    /// </summary>
    public static long KestrelLimit(long max) => 2 * max + 65536;

    /// <summary>Refuses a declared length over <paramref name="max"/> at once; bounds a chunked body as it is read.</summary>
    public static void Apply(HttpContext ctx, long max)
    {
        if (ctx.Request.ContentLength is { } declared)
        {
            if (declared > max) throw Err.TooLarge();
            return;
        }
        if (ctx.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == false) return;
        if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } f) f.MaxRequestBodySize = KestrelLimit(max);
        ctx.Request.Body = new LimitedStream(ctx.Request.Body, max, ctx);
    }

    /// <summary>A read-only view of the request body that refuses to go past <c>max</c> decoded bytes.</summary>
    sealed class LimitedStream(Stream inner, long max, HttpContext ctx) : Stream
    {
        long _read;

        int Count(int n)
        {
            _read += n;
            if (_read > max)
            {
                ctx.Items[ErrorMiddleware.BodyTooLargeItem] = true;
                throw new BadHttpRequestException("Request body too large", StatusCodes.Status413PayloadTooLarge);
            }
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));
        public override int Read(Span<byte> buffer) => Count(inner.Read(buffer));
        public override async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct)
            => Count(await inner.ReadAsync(buffer.AsMemory(offset, count), ct));
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
            => Count(await inner.ReadAsync(buffer, ct));

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
