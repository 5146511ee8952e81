using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence.S4D;

/// <summary>The S4D backbone: one <see cref="S4DLayer"/> per block, its state-space parameters in their own optimizer group.</summary>
internal sealed class S4DBackbone : ISequenceBackboneFactory
{
    private readonly S4DOptions _options;

    public S4DBackbone(S4DOptions options)
    {
        options.Validate();
        _options = options;
        LayerParameterGroups = options.SsmLearningRate > 0
            ? new[] { new ParameterGroupOptions { NamePrefix = "ssm.", LearningRate = options.SsmLearningRate, WeightDecay = options.SsmWeightDecay } }
            : Array.Empty<ParameterGroupOptions>();
    }

    public IReadOnlyList<ParameterGroupOptions> LayerParameterGroups { get; }

    /// <summary>The options the layers are built with.</summary>
    public S4DOptions Options => _options;

    /// <remarks>
    /// 17H: the masked input and its contiguous transpose (2H), rfft of length 2L (L + 1 complex values: 2H), its product
    /// with the kernel's spectrum (2H), irfft of length 2L (2H), the D·u term and sum (2H), GELU (H), dropout mask and
    /// output (3H), the 2H-wide output projection (2H) and GLU (H). The kernel itself has no batch factor.
    /// </remarks>
    public IReadOnlyList<double> TrainingValuesPerStep(SequenceNetworkShape shape) => new[] { 17.0 * shape.Width };

    public IReadOnlyList<nn.Module<Tensor, Tensor>> CreateLayers(int index, SequenceNetworkShape shape)
    {
        var layer = new S4DLayer(shape.Width, _options, shape.Dropout, shape.Bidirectional, shape.MonarchBlocks);
        if (_options.SsmLearningRate == 0)
        {
            foreach (var p in layer.StateSpace.parameters())
                p.requires_grad = false;
        }
        return new[] { layer };
    }
}
