using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers;

/// <summary>
/// A network whose forward is its layers applied one after another, so layer-wise attribution rules
/// (DeepLift, LRP, Guided Backprop, Grad-CAM) can walk it. Nested sequentials are flattened by the walker.
/// </summary>
internal interface ILayeredNetwork
{
    /// <summary>The layers in forward order; the first reads the flat [batch, features] input.</summary>
    IReadOnlyList<nn.Module<Tensor, Tensor>> Layers { get; }
}
