using System.ComponentModel;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;

namespace Microsoft.ML.Hazy.Onnx;

// ML.NET's OnnxTransformer refuses variable-size vector columns, so a variable-length sequence model's
// scoring chain first pads each row with zeros to a fixed number of values and passes the true value
// count beside it; the ONNX graph cuts the row back to its length. A CustomMapping's output size is fixed
// by an attribute and is not saved with the model, hence one registered contract per padded size.

/// <summary>Internal plumbing of saved Hazy models: one variable-length sequence row.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class SequenceValues
{
    /// <summary>The row's values, time-major.</summary>
    [ColumnName(SequencePadding.InputColumn)]
    public float[] Values = Array.Empty<float>();
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 64 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence64
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(64)]
    public float[] Values = new float[64];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 64 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence64.v1")]
public sealed class PadSequence64Factory : CustomMappingFactory<SequenceValues, PaddedSequence64>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence64> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 64);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 128 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence128
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(128)]
    public float[] Values = new float[128];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 128 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence128.v1")]
public sealed class PadSequence128Factory : CustomMappingFactory<SequenceValues, PaddedSequence128>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence128> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 128);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 256 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence256
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(256)]
    public float[] Values = new float[256];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 256 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence256.v1")]
public sealed class PadSequence256Factory : CustomMappingFactory<SequenceValues, PaddedSequence256>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence256> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 256);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 512 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence512
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(512)]
    public float[] Values = new float[512];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 512 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence512.v1")]
public sealed class PadSequence512Factory : CustomMappingFactory<SequenceValues, PaddedSequence512>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence512> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 512);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 1024 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence1024
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(1024)]
    public float[] Values = new float[1024];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 1024 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence1024.v1")]
public sealed class PadSequence1024Factory : CustomMappingFactory<SequenceValues, PaddedSequence1024>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence1024> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 1024);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 2048 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence2048
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(2048)]
    public float[] Values = new float[2048];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 2048 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence2048.v1")]
public sealed class PadSequence2048Factory : CustomMappingFactory<SequenceValues, PaddedSequence2048>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence2048> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 2048);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 4096 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence4096
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(4096)]
    public float[] Values = new float[4096];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 4096 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence4096.v1")]
public sealed class PadSequence4096Factory : CustomMappingFactory<SequenceValues, PaddedSequence4096>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence4096> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 4096);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 8192 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence8192
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(8192)]
    public float[] Values = new float[8192];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 8192 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence8192.v1")]
public sealed class PadSequence8192Factory : CustomMappingFactory<SequenceValues, PaddedSequence8192>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence8192> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 8192);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 16384 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence16384
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(16384)]
    public float[] Values = new float[16384];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 16384 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence16384.v1")]
public sealed class PadSequence16384Factory : CustomMappingFactory<SequenceValues, PaddedSequence16384>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence16384> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 16384);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 32768 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence32768
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(32768)]
    public float[] Values = new float[32768];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 32768 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence32768.v1")]
public sealed class PadSequence32768Factory : CustomMappingFactory<SequenceValues, PaddedSequence32768>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence32768> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 32768);
}

/// <summary>Internal plumbing of saved Hazy models: a sequence row zero-padded to 65536 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class PaddedSequence65536
{
    /// <summary>The row's values followed by zeros.</summary>
    [ColumnName(SequencePadding.PaddedColumn), VectorType(65536)]
    public float[] Values = new float[65536];

    /// <summary>The number of the row's own values.</summary>
    [ColumnName(SequencePadding.CountColumn), VectorType(1)]
    public long[] Count = new long[1];
}

/// <summary>Internal plumbing of saved Hazy models: pads sequence rows to 65536 values.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
[CustomMappingFactoryAttribute("Microsoft.ML.Hazy.PadSequence65536.v1")]
public sealed class PadSequence65536Factory : CustomMappingFactory<SequenceValues, PaddedSequence65536>
{
    /// <inheritdoc/>
    public override Action<SequenceValues, PaddedSequence65536> GetMapping() =>
        (src, dst) => (dst.Values, dst.Count) = SequencePadding.Pad(src.Values, 65536);
}

internal static class SequencePadding
{
    public const string InputColumn = "__HazySequenceValues";
    public const string PaddedColumn = "__HazyPaddedSequence";
    public const string CountColumn = "__HazySequenceValueCount";

    private static readonly (int Size, Func<MLContext, IEstimator<ITransformer>> Create)[] Contracts =
    {
        (64, ml => ml.Transforms.CustomMapping(new PadSequence64Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence64.v1")),
        (128, ml => ml.Transforms.CustomMapping(new PadSequence128Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence128.v1")),
        (256, ml => ml.Transforms.CustomMapping(new PadSequence256Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence256.v1")),
        (512, ml => ml.Transforms.CustomMapping(new PadSequence512Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence512.v1")),
        (1024, ml => ml.Transforms.CustomMapping(new PadSequence1024Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence1024.v1")),
        (2048, ml => ml.Transforms.CustomMapping(new PadSequence2048Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence2048.v1")),
        (4096, ml => ml.Transforms.CustomMapping(new PadSequence4096Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence4096.v1")),
        (8192, ml => ml.Transforms.CustomMapping(new PadSequence8192Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence8192.v1")),
        (16384, ml => ml.Transforms.CustomMapping(new PadSequence16384Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence16384.v1")),
        (32768, ml => ml.Transforms.CustomMapping(new PadSequence32768Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence32768.v1")),
        (65536, ml => ml.Transforms.CustomMapping(new PadSequence65536Factory().GetMapping(), "Microsoft.ML.Hazy.PadSequence65536.v1")),
    };

    /// <summary>The largest padded row a contract exists for.</summary>
    public static int MaximumValues => Contracts[^1].Size;

    /// <summary>The smallest padded size that holds <paramref name="values"/> values.</summary>
    public static int SizeFor(int values)
    {
        foreach (var (size, _) in Contracts)
        {
            if (size >= values)
                return size;
        }
        throw new ArgumentOutOfRangeException(nameof(values), values,
            $"A variable-length sequence model accepts at most {MaximumValues} values per row (time steps × channels); pad the rows to one length instead.");
    }

    /// <summary>The registered mapping that pads rows to <paramref name="size"/> values.</summary>
    public static IEstimator<ITransformer> Create(MLContext ml, int size) =>
        Contracts.First(c => c.Size == size).Create(ml);

    public static (float[] Values, long[] Count) Pad(float[] values, int size)
    {
        if (values.Length > size)
            throw new InvalidOperationException(
                $"A sequence row has {values.Length} values but this model accepts at most {size} per row (time steps × channels); "
                + "train with a larger SequenceTrainer.Options.MaximumLength to score longer rows.");
        var padded = new float[size];
        values.CopyTo(padded, 0);
        return (padded, new long[] { values.Length });
    }
}
