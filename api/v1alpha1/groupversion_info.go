package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of IMCluster.
	GroupVersion = schema.GroupVersion{Group: "imcluster.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package. It is apimachinery's
	// builder, not controller-runtime's, so importing the API costs no more
	// than apimachinery.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &IMCluster{}, &IMClusterList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
