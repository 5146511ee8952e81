using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.OnnxRuntime;

namespace Microsoft.ML.Hazy.Onnx;

/// <summary>
/// Loads a saved model, and when ML.NET fails to rebuild it, names the zip entry of the ONNX graph that does not
/// load: ML.NET reports only "Error during class instantiation" and a temporary file name.
/// </summary>
internal static class SavedModelDiagnostics
{
    /// <summary>The entry name <c>OnnxTransformer</c> saves its graph under, inside the transformer's folder.</summary>
    private const string OnnxEntryName = "OnnxModel";

    public static ITransformer Load(MLContext mlContext, string filePath, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        try
        {
            return mlContext.Model.Load(filePath, out inputSchema);
        }
        catch (InvalidOperationException e)
        {
            if (FirstFailingOnnxEntry(filePath) is not (string entry, string error))
                throw;
            throw new InvalidDataException(
                $"Model file '{filePath}': the ONNX graph in entry '{entry}' does not load ({error}); the file is corrupt or was changed after it was saved.", e);
        }
    }

    /// <summary>The first <c>OnnxModel</c> entry that ONNX Runtime cannot load, with its error; null when all load.</summary>
    private static (string Entry, string Error)? FirstFailingOnnxEntry(string filePath)
    {
        ZipArchive zip;
        try
        {
            zip = ZipFile.OpenRead(filePath);
        }
        catch (InvalidDataException)
        {
            return null;
        }

        using (zip)
        {
            foreach (var entry in zip.Entries)
            {
                if (entry.Name != OnnxEntryName)
                    continue;
                byte[] bytes;
                using (var stream = entry.Open())
                using (var memory = new MemoryStream())
                {
                    stream.CopyTo(memory);
                    bytes = memory.ToArray();
                }
                // ML.NET writes the graph as a byte array: an int32 length, then the bytes.
                var graph = bytes.Length >= 4 && BinaryPrimitives.ReadInt32LittleEndian(bytes) == bytes.Length - 4 ? bytes[4..] : bytes;
                try
                {
                    using var session = new InferenceSession(graph);
                }
                catch (OnnxRuntimeException e)
                {
                    return (entry.FullName, e.Message);
                }
            }
        }
        return null;
    }
}
