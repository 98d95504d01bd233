using System.Text.Json.Nodes;

namespace Conduit.Common;

/// <summary>
/// A Matrix error: the <c>errcode</c> (e.g. <c>M_FORBIDDEN</c>), the HTTP status to answer with, and a
/// human-readable message. <see cref="Extra"/> holds additional top-level fields of the error body
/// (e.g. <c>retry_after_ms</c>). Crosses gRPC boundaries intact (see Conduit.Common.Grpc.MatrixErrors).
/// </summary>
public sealed class MatrixException(string errcode, int status, string message) : Exception(message)
{
    public string ErrCode { get; } = errcode;

    public int Status { get; } = status;

    public JsonObject? Extra { get; set; }
}
