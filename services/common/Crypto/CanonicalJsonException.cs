namespace Conduit.Common.Crypto;

/// <summary>
/// Thrown when a JSON value cannot be encoded as Matrix canonical JSON
/// (non-integer or out-of-range numbers, unpaired surrogates, duplicate keys on parse).
/// </summary>
public sealed class CanonicalJsonException : Exception
{
    public CanonicalJsonException(string message) : base(message) { }

    public CanonicalJsonException(string message, Exception inner) : base(message, inner) { }
}
