from meshadmin.views.generic import model_urls

from . import views

app_name = "topics"
urlpatterns = [
    *model_urls("topic", list_view=views.TopicListView, detail_view=views.TopicView,
                edit_view=views.TopicEditView, delete_view=views.TopicDeleteView),
    *model_urls("eventstore", list_view=views.EventStoreListView, detail_view=views.EventStoreView,
                edit_view=views.EventStoreEditView, delete_view=views.EventStoreDeleteView),
]
