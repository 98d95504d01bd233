using System.Text.Json.Nodes;

namespace Conduit.Common;

// TEMPORARY SHIM — delete this file when merging with the branch that adds
// services/common/MatrixException.cs (it exists uncommitted in the main and wt-storage work trees but
// is not on wt-sync as branched). The signature below mirrors that file exactly (primary constructor
// (errcode, status, message); ErrCode, Status, Extra), so Filter.cs compiles unchanged against either.
// If both files are present the build fails with a duplicate-type error (CS0101), which is the cue.
public sealed class MatrixException(string errcode, int status, string message) : Exception(message)
{
    public string ErrCode { get; } = errcode;
    public int Status { get; } = status;
    public JsonObject? Extra { get; set; }
}
