using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// What a trainer optimises: the mean loss of a batch for the backward pass. It receives the network's forward pass, not its
/// output, so it can run several views of a batch, add penalties, or differentiate with respect to the input
/// (<c>torch.autograd.grad</c> with <c>create_graph: true</c>; see <see cref="TensorBatch.WithFeatures"/>).
/// The training loop calls it under autograd in training mode; validation uses the head's loss and metric instead.
/// </summary>
internal interface ITrainingObjective
{
    /// <summary>The loss to minimise on <paramref name="batch"/>, computed with <paramref name="forward"/> (the network on a batch).</summary>
    Tensor Loss(Func<TensorBatch, Tensor> forward, TensorBatch batch);
}

/// <summary>
/// An objective that needs the network itself, not only its forward pass (activations of inner layers), and a random
/// stream of the run. The trainer attaches the network before training starts, and again after a network switch.
/// </summary>
internal interface INetworkObjective
{
    /// <summary>Uses <paramref name="network"/> and the run's <paramref name="generator"/> from now on.</summary>
    void Attach(nn.Module<Tensor, Tensor> network, Generator generator);
}

/// <summary>Training objectives.</summary>
internal static class Objectives
{
    /// <summary>The supervised objective: the head's (weighted) loss of the network's output on the batch's features.</summary>
    public static ITrainingObjective Supervised(OutputHead head) => new SupervisedObjective(head);

    private sealed class SupervisedObjective : ITrainingObjective
    {
        private readonly OutputHead _head;

        public SupervisedObjective(OutputHead head) => _head = head ?? throw new ArgumentNullException(nameof(head));

        public Tensor Loss(Func<TensorBatch, Tensor> forward, TensorBatch batch)
        {
            using var output = forward(batch);
            return _head.Loss(output, batch);
        }
    }
}
