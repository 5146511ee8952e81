using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// The model inside a <see cref="HazyPredictionTransformer"/>, as ML.NET's <c>IPredictionTransformer&lt;TModel&gt;.Model</c>
/// exposes it: the task, the shape of a row, the classes and the trained TorchSharp network. Tools that take an
/// <c>ISingleFeaturePredictionTransformer&lt;TModel&gt;</c>, such as <c>PermutationFeatureImportance</c>, receive it.
/// </summary>
/// <remarks>
/// It refers to the live network of its transformer: disposing the transformer frees the network this object describes.
/// </remarks>
public sealed class HazyModelParameters
{
    internal HazyModelParameters(nn.Module<Tensor, Tensor> network, PredictionKind kind, IReadOnlyList<long> rowShape, IReadOnlyList<string> classNames)
    {
        Network = network;
        Kind = kind;
        RowShape = rowShape;
        ClassNames = classNames;
    }

    /// <summary>The task, which fixes the output columns.</summary>
    public PredictionKind Kind { get; }

    /// <summary>The shape of one row's features as the network sees them ([D], or [L, C] for a sequence model with L = -1 for variable length).</summary>
    public IReadOnlyList<long> RowShape { get; }

    /// <summary>Class names in class-index order (multiclass); empty otherwise.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The trained TorchSharp network (shared with the transformer, which owns and disposes it).</summary>
    public nn.Module<Tensor, Tensor> Network { get; }

    /// <summary>The number of trained values (the elements of every parameter tensor).</summary>
    /// <exception cref="ObjectDisposedException">The transformer was disposed, which freed the network.</exception>
    public long NumberOfParameters => Network.parameters().Sum(p => p.numel());

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Network.GetType().Name} ({Kind}) over rows of shape [{string.Join(", ", RowShape)}]" + (ClassNames.Count > 0 ? $", {ClassNames.Count} classes" : "");
}
